"""Eval-stage config: which suites, against which served model."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agentray.collect import RolloutConfig, check_family_names
from agentray.envs.registry import family_names
from agentray.eval.general.config import GeneralConfig
from agentray.policies.config import OpenAIConfig, policy_config_type

# a policy section without ``backend`` is the served model's endpoint (openai)
ServedPolicyConfig = policy_config_type("openai")


def _served_policy() -> OpenAIConfig:
    return OpenAIConfig(model="agentray", base_url="http://127.0.0.1:8000/v1")


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    families: list[str] = Field(default_factory=family_names, description="held-in families")
    held_out: list[str] = Field(
        default_factory=list,
        description="held-out env families (any registered ones, e.g. scienceworld, miniwob), "
        "played on the same split through the same rollout engine",
    )
    split: Literal["train", "test"] = "test"
    max_tasks_per_family: int | None = Field(None, gt=0)
    policy: ServedPolicyConfig = Field(
        default_factory=_served_policy,
        description="the model under evaluation: any OpenAI-compatible endpoint",
    )
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    general: GeneralConfig = Field(
        default_factory=GeneralConfig,
        description="general-ability suites (MMLU, HumanEval, GSM-style, MT-Bench)",
    )
    reference_file: str | None = Field(
        None,
        description="JSON of reference models' per-task scores for the Overall weights "
        "(layout of agentray/eval/data/agenttuning_reference.json); None: the paper's",
    )
    sample_trajectories: int = Field(
        1, ge=0, description="sample episodes / items shown per task in the report"
    )
    max_error_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="a task whose episodes / items end in task_error / request_error more "
        "often than this is not measured (no score, left out of the Overall) and the stage "
        "fails (exit 1; scores, report and manifest written) (1: never)",
    )

    _families = field_validator("families", "held_out")(check_family_names)

    @model_validator(mode="after")
    def _held_out_apart(self) -> EvalConfig:
        both = sorted(set(self.families) & set(self.held_out))
        if both:
            raise ValueError(f"families {both} are listed as both held-in and held-out")
        return self
