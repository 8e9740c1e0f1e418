"""The MiniWoB++ family's settings and task types."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field

from agentray.envs.base import FamilyConfig

INSTALL_HINT = (
    "MiniWoB++ is an optional extra: pip install 'agentray[heldout]' and "
    "apt-get install chromium chromium-driver"
)


# Task types with a scripted expert whose pages differ from seed to seed (focus-text and
# click-button-sequence show the same page for every seed, so their tasks would repeat).
MiniWoBTask = Literal[
    "click-button",
    "click-link",
    "enter-text",
    "enter-password",
    "click-dialog",
]


class MiniWoBConfig(FamilyConfig):
    n_train: int = Field(6, ge=0, description="train tasks (MiniWoB++ seeds)")
    n_test: int = Field(6, ge=0, description="test tasks (seeds disjoint from train)")
    max_rounds: int = Field(10, gt=0, description="agent turns per episode")
    task_types: list[MiniWoBTask] = Field(
        default_factory=lambda: list(get_args(MiniWoBTask)),
        min_length=1,
        description="MiniWoB++ task types (subdomains) with a scripted expert; round-robin",
    )
    one_shot: bool = Field(True, description="prepend a 1-shot demonstration of the task type")
    episode_time_limit_s: float = Field(
        600.0, gt=0, description="MiniWoB++'s episode clock (its own default is 10 s)"
    )
