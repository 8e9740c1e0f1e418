"""The Mind2Web family's settings."""

from __future__ import annotations

from pydantic import Field, model_validator

from agentray.envs.base import FamilyConfig


class Mind2WebConfig(FamilyConfig):
    max_rounds: int = Field(
        10,
        ge=1,
        description="agent turns at most; each turn scores one step, so it only bites below "
        "the task's step count (max_steps + slack)",
    )
    n_candidates: int = Field(
        5, ge=2, le=25, description="candidate elements per step, the gold one included"
    )
    min_steps: int = Field(3, ge=1, description="fewest gold steps in a task")
    max_steps: int = Field(8, ge=1, description="most gold steps in a task")
    previous_k: int = Field(5, ge=0, description="previous actions shown (MindAct: 5)")
    n_shots: int = Field(3, ge=0, le=3, description="demonstration exchanges in the prompt")
    max_invalid_streak: int = Field(
        0, ge=0, description="end after this many unparseable replies in a row (0: never)"
    )

    @model_validator(mode="after")
    def _step_range(self) -> Mind2WebConfig:
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps {self.min_steps} > max_steps {self.max_steps}")
        return self
