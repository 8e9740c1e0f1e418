"""The ALFWorld family's settings and task types."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field, model_validator

from agentray.envs.base import FamilyConfig

TaskType = Literal[
    "pick_and_place",
    "pick_clean_then_place",
    "pick_heat_then_place",
    "pick_cool_then_place",
    "look_at_obj_in_light",
    "pick_two_obj_and_place",
]


TASK_TYPES: tuple[str, ...] = get_args(TaskType)


class AlfWorldConfig(FamilyConfig):
    max_rounds: int = Field(35, ge=1, description="agent turns per episode (AgentBench's max_step)")
    task_types: list[TaskType] = Field(
        default_factory=lambda: list(TASK_TYPES),
        min_length=1,
        description="which of ALFWorld's six task types to generate (drawn uniformly)",
    )
    min_distractors: int = Field(4, ge=0, description="fewest objects besides the goal's")
    max_distractors: int = Field(12, ge=0, description="most objects besides the goal's")
    max_expert_steps: int = Field(
        30, ge=1, description="a drawn world whose expert plan is longer is drawn again"
    )
    show_available_actions: bool = Field(
        False, description="append AgentBench's ' AVAILABLE ACTIONS: ...' list to every turn"
    )
    fuzzy_match: bool = Field(
        True, description="snap an inadmissible command to the nearest admissible one (BLEU)"
    )
    fail_on_repeat: bool = Field(
        True, description="the same reply three times in a row ends as agent_invalid_action"
    )
    one_shot: bool = Field(True, description="False: no demonstration before the task")

    @model_validator(mode="after")
    def _check(self) -> AlfWorldConfig:
        if self.min_distractors > self.max_distractors:
            raise ValueError("min_distractors must not exceed max_distractors")
        if self.max_expert_steps > self.max_rounds:
            raise ValueError("max_expert_steps must not exceed max_rounds (the expert must fit)")
        if len(set(self.task_types)) != len(self.task_types):
            raise ValueError("task_types has duplicates")
        return self
