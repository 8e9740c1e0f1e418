"""General-ability suites: MMLU, HumanEval, a GSM8K-style set, MT-Bench."""
