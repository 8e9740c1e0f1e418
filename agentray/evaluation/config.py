"""Eval-stage config: which suites, against which served model."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentray.envs.registry import family_names
from agentray.policies.registry import PolicyConfig
from agentray.rollout.config import RolloutConfig, _check_families


def _served_policy() -> PolicyConfig:
    return PolicyConfig(backend="openai", model="agentray", base_url="http://127.0.0.1:8000/v1")


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    families: list[str] = Field(default_factory=family_names, description="held-in families")
    split: Literal["train", "test"] = "test"
    max_tasks_per_family: int | None = Field(None, gt=0)
    family_configs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    policy: PolicyConfig = Field(
        default_factory=_served_policy,
        description="the model under evaluation: any OpenAI-compatible endpoint",
    )
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    sample_trajectories: int = Field(1, ge=0, description="sample episodes shown per family")

    _families = field_validator("families")(_check_families)
