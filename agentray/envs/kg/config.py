"""The KG family's settings and question types."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from agentray.envs.base import FamilyConfig

QuestionType = Literal["one_hop", "two_hop", "intersection", "count", "argmax", "argmin"]


QUESTION_TYPES: tuple[QuestionType, ...] = (
    "one_hop",
    "two_hop",
    "intersection",
    "count",
    "argmax",
    "argmin",
)


TYPE_WEIGHTS = {
    "one_hop": 2,
    "two_hop": 3,
    "intersection": 2,
    "count": 2,
    "argmax": 1,
    "argmin": 1,
}


class KGConfig(FamilyConfig):
    max_rounds: int = Field(15, ge=1, description="agent replies per episode (AgentBench: 15)")
    triples_path: str | None = Field(
        None,
        description="TSV of head<TAB>relation<TAB>tail triples to use instead of the generated "
        "graph (numeric tails are attributes; type.object.type, type.object.name and "
        "type.property.expected_type rows are read as schema)",
    )
    scale: int = Field(1, ge=1, le=10, description="size multiplier of the generated graph")
    max_answers: int = Field(
        10, ge=1, description="largest gold answer set a generated question may have"
    )
    question_types: list[QuestionType] = Field(
        default_factory=lambda: list(QUESTION_TYPES),
        description=f"question types to draw from: {', '.join(QUESTION_TYPES)}",
    )
    one_shot: bool = Field(True, description="include AgentBench's 1-shot demonstration")

    @field_validator("question_types")
    @classmethod
    def _some_types(cls, value: list[QuestionType]) -> list[QuestionType]:
        if not value:
            raise ValueError("question_types needs at least one of " + ", ".join(QUESTION_TYPES))
        return value
