"""The ScienceWorld family's settings and task types."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agentray.envs.base import FamilyConfig

ScienceWorldTask = Literal[
    "boil",
    "change-the-state-of-matter-of",
    "chemistry-mix",
    "chemistry-mix-paint-secondary-color",
    "chemistry-mix-paint-tertiary-color",
    "find-animal",
    "find-living-thing",
    "find-non-living-thing",
    "find-plant",
    "freeze",
    "grow-fruit",
    "grow-plant",
    "identify-life-stages-1",
    "identify-life-stages-2",
    "inclined-plane-determine-angle",
    "inclined-plane-friction-named-surfaces",
    "inclined-plane-friction-unnamed-surfaces",
    "lifespan-longest-lived",
    "lifespan-longest-lived-then-shortest-lived",
    "lifespan-shortest-lived",
    "measure-melting-point-known-substance",
    "measure-melting-point-unknown-substance",
    "melt",
    "mendelian-genetics-known-plant",
    "mendelian-genetics-unknown-plant",
    "power-component",
    "power-component-renewable-vs-nonrenewable-energy",
    "test-conductivity",
    "test-conductivity-of-unknown-substances",
    "use-thermometer",
]


# Task types whose gold paths are short (5-30 steps) and whose variations load fast ('boil'
# is longer: its test variations need the foundry and 50+ steps).
DEFAULT_TASK_TYPES: tuple[str, ...] = (
    "find-living-thing",
    "lifespan-longest-lived",
    "power-component",
    "use-thermometer",
    "chemistry-mix",
    "test-conductivity",
)


INSTALL_HINT = "ScienceWorld is an optional extra: pip install 'agentray[heldout]' (needs Java 17)"


class ScienceWorldConfig(FamilyConfig):
    n_train: int = Field(6, ge=0, description="train tasks (from ScienceWorld's train variations)")
    n_test: int = Field(6, ge=0, description="test tasks (from ScienceWorld's test variations)")
    max_rounds: int = Field(
        50,
        gt=0,
        description="agent turns per episode; variations with a longer gold path are skipped",
    )
    task_types: list[ScienceWorldTask] = Field(
        default_factory=lambda: list(DEFAULT_TASK_TYPES),
        min_length=1,
        description="ScienceWorld task types; tasks are spread round-robin over them",
    )
    simplifications: str = Field(
        "",
        description="ScienceWorld simplifications, comma separated (e.g. easy, teleportAction, "
        "openDoors); empty: the full task",
    )
    one_shot: bool = Field(True, description="prepend a 1-shot demonstration of the task type")
    jvm_options: str = Field(
        "-Xmx1g", description="JVM options of each simulator (the JVM's default heap is 1/4 of RAM)"
    )
