"""Settings of the general-ability suites (MMLU, HumanEval, GSM-style maths, MT-Bench)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentray.policies.config import HFConfig, OpenAIConfig, VLLMConfig, policy_config_type
from agentray.types import GenerationParams


class ShortAnswerParams(GenerationParams):
    max_new_tokens: int = Field(32, description="tokens generated per answer at most")


class LongAnswerParams(GenerationParams):
    max_new_tokens: int = Field(1024, description="tokens generated per turn at most")


class JudgeParams(GenerationParams):
    max_new_tokens: int = Field(2048, description="tokens of judgment at most (FastChat's)")


class SuiteConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_items: int | None = Field(
        None, gt=0, description="items of this suite at most (None: eval.general.max_items)"
    )


class MMLUConfig(SuiteConfig):
    n_shots: int = Field(
        5,
        ge=0,
        le=5,
        description="demonstrations per question, from the same subject (5: the usual MMLU setting); "
        "the first 5 questions of each subject are kept aside for them",
    )
    params: ShortAnswerParams = Field(default_factory=ShortAnswerParams)


class GSMConfig(SuiteConfig):
    size: int = Field(1319, gt=0, description="problems generated (GSM8K's test split has 1,319)")
    n_shots: int = Field(
        8,
        ge=0,
        le=8,
        description="worked chain-of-thought demonstrations, generated with another seed "
        "(8: the usual GSM8K chain-of-thought setting)",
    )
    params: GenerationParams = Field(default_factory=GenerationParams)


class HumanEvalConfig(SuiteConfig):
    timeout_s: float = Field(10.0, gt=0, description="wall time per program in the sandbox")
    python: str = Field(
        "python3", description="interpreter inside the sandbox (only the host's /usr is visible)"
    )
    parallel_executions: int = Field(2, gt=0, description="programs run at once")
    max_memory_mb: int = Field(1024, gt=0, description="address-space limit per program")
    params: GenerationParams = Field(default_factory=GenerationParams)


# the judge is a model at an endpoint: a section without ``backend`` is an openai one
JudgePolicyConfig = policy_config_type(
    "openai", (OpenAIConfig, HFConfig, VLLMConfig), role="judge answers"
)


class MTBenchConfig(SuiteConfig):
    judge: JudgePolicyConfig | None = Field(
        None,
        description="judge model at an OpenAI-compatible endpoint (the paper: GPT-4), e.g. "
        "{backend: openai, model: gpt-4, base_url: ...}; None: MT-Bench is skipped",
    )
    temperature: float | None = Field(
        None, ge=0, description="answer temperature; None: FastChat's per-category temperatures"
    )
    params: LongAnswerParams = Field(default_factory=LongAnswerParams)
    judge_params: JudgeParams = Field(default_factory=JudgeParams)


class GeneralConfig(BaseModel):
    """Which general suites run, on how many items, and how each one asks and scores."""

    model_config = ConfigDict(extra="forbid")

    suites: list[str] = Field(
        default_factory=lambda: ["mmlu", "humaneval", "gsm_symbolic", "mt_bench"],
        description="general suites to run, from mmlu, humaneval, gsm_symbolic, mt_bench",
    )
    max_items: int | None = Field(
        10,
        gt=0,
        description="items per suite (a seeded sample; small for the quickstart); None: the "
        "whole benchmark (MMLU 13,757 scored, HumanEval 164, GSM 1,319, MT-Bench 80)",
    )
    seed: int = Field(0, description="seeds the item sample and the generated GSM problems")
    max_concurrency: int = Field(
        64, gt=0, description="items in flight at once (the policy caps its own requests too)"
    )
    mmlu: MMLUConfig = Field(default_factory=MMLUConfig)
    humaneval: HumanEvalConfig = Field(default_factory=HumanEvalConfig)
    gsm_symbolic: GSMConfig = Field(default_factory=GSMConfig)
    mt_bench: MTBenchConfig = Field(default_factory=MTBenchConfig)

    @field_validator("suites")
    @classmethod
    def _known_suites(cls, value: list[str]) -> list[str]:
        from agentray.eval.general.registry import suite_names

        unknown = [s for s in value if s not in suite_names()]
        if unknown:
            raise ValueError(f"unknown general suites {unknown}; allowed: {suite_names()}")
        if len(set(value)) != len(value):
            raise ValueError(f"a suite is listed twice: {value}")
        return value

    def suite_config(self, name: str) -> SuiteConfig:
        return getattr(self, name)

    def items_limit(self, name: str) -> int | None:
        own = self.suite_config(name).max_items
        return own if own is not None else self.max_items
