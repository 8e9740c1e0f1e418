"""The eval stage: held-in and held-out env families through the rollout engine, general
suites (MMLU, HumanEval, GSM, MT-Bench), the paper's Overall, and the report.

``run_eval(EvalConfig(...), run_dir)`` or ``agentray eval CONFIG``; ``compare_runs`` puts
two evaluated runs side by side.
"""

from agentray.eval.config import EvalConfig
from agentray.registry import lazy_exports

__all__ = ["CompareError", "Doc", "EvalConfig", "ReferenceError", "compare_runs", "run_eval"]

__getattr__ = lazy_exports(
    {
        "run_eval": "agentray.eval.run:run_eval",
        "compare_runs": "agentray.eval.compare:compare_runs",
        "CompareError": "agentray.eval.compare:CompareError",
        "ReferenceError": "agentray.eval.overall:ReferenceError",
        "Doc": "agentray.eval.doc:Doc",
    }
)
