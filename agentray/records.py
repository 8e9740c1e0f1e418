"""The Trajectory record (one parquet row per episode) and the EpisodeResult it is made from.

``conversations`` is exactly the public AgentInstruct schema: a list of
``{"from": "human"|"gpt", "loss": bool|None, "value": str}`` where human turns carry
``loss: None``, demonstration answers ``loss: False`` and the agent's own answers
``loss: True``. The public dataset therefore loads as-is.

The parquet schema is derived from the ``Trajectory`` model (``arrow_schema``); fields
typed as dicts (``policy``, ``timings``) are stored as JSON text. Rows read back go
through ``Trajectory.from_row``, which ignores columns the model does not have (runs
written before ``response_token_ids`` was dropped still load) and gives a column a shard
lacks (``attempt``, added later) its default.

A task id may carry several rows (a ``task_error`` and the rerun that retried it, or two
drivers over one folder at once): every reader keeps one per id by ``replaces_kept``.
``read_trajectory_shard`` reads one shard, and names it in one line (``CorruptShardError``)
when it cannot: the collect sink's readers use it, and the process stage may (it cannot
import collect) to set such a shard aside.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Mapping
from enum import Enum
from typing import Annotated, Any, ClassVar, Union

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, field_validator
from typing_extensions import TypedDict, is_typeddict

from agentray import storage
from agentray.types import Message, Status, TaskSpec

ConversationTurn = TypedDict(
    "ConversationTurn",
    {"from": str, "loss": Union[bool, None], "value": str},  # noqa: UP007
)


class ArrowType:
    """Field metadata: the arrow type of a column where the default mapping is not wanted."""

    def __init__(self, type_: pa.DataType) -> None:
        self.type = type_


def env_version_of(family: str, version: str) -> str:
    """The ``env_version`` of a record: ``<family>-v<Env.version>``, e.g. ``db-v1``."""
    return f"{family}-v{version}"


def agent_turns(messages: list[Message]) -> int:
    """The agent's own answers (demonstration answers, ``loss: False``, not counted)."""
    return sum(1 for m in messages if m["role"] == "assistant" and m.get("loss") is not False)


class EpisodeResult(BaseModel):
    """What one run of an episode gives the engine (``EnvPool.run_episode``).

    The pool fills it in as the episode goes (attribute assignment does not validate, so a
    turn costs no validation); ``lost`` names the actor kind that died mid-episode, if any
    (the engine then restarts the episode elsewhere)."""

    messages: list[Message] = Field(default_factory=list)
    reward: float = 0.0
    status: Status = Status.TASK_ERROR
    error: str | None = None
    lost: str | None = None
    timings: dict[str, float | int] = Field(default_factory=lambda: {"env_s": 0.0, "policy_s": 0.0})
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def turns(self) -> int:
        return agent_turns(self.messages)

    def finish(self, reward: float, status: Status | str, error: str | None = None) -> None:
        self.reward, self.status, self.error = float(reward), Status(status), error

    @classmethod
    def failed(cls, error: str) -> EpisodeResult:
        """An attempt that produced no conversation."""
        return cls(error=error)


class Trajectory(BaseModel):
    """One finished episode, as collection writes it and every later stage reads it."""

    model_config = ConfigDict(extra="ignore")

    id: str
    task: str  # the family, e.g. "db"
    split: str
    env_version: str  # env_version_of(family, Env.version)
    conversations: list[ConversationTurn]
    reward: float
    status: Status
    turns: Annotated[int, ArrowType(pa.int32())]  # the agent's own answers
    policy: dict[str, Any] = Field(default_factory=dict)  # name, backend, params (JSON text)
    seed: int
    timings: dict[str, float | int] = Field(default_factory=dict)  # wall_s, ... (JSON text)
    error: str | None = None
    # which run of this task id wrote the record: 1, then +1 per rerun that retried a task_error
    attempt: int = 1

    JSON_FIELDS: ClassVar[tuple[str, ...]] = ("policy", "timings")

    @field_validator("attempt", mode="before")
    @classmethod
    def _first_attempt(cls, value: Any) -> Any:
        return 1 if value is None else value  # a shard written before the column existed

    @field_validator("policy", "timings", mode="before")
    @classmethod
    def _parse_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(value) if value else {}
        return {} if value is None else value

    @classmethod
    def from_episode(
        cls,
        task: TaskSpec,
        episode: EpisodeResult,
        env_version: str,
        policy: dict[str, Any],
        timings: dict[str, float | int] | None = None,
    ) -> Trajectory:
        """The record of ``episode`` played on ``task`` (``timings`` default: the episode's)."""
        return cls(
            id=task.id,
            task=task.family,
            split=task.split,
            env_version=env_version,
            conversations=to_conversations(episode.messages),
            reward=episode.reward,
            status=episode.status,
            turns=episode.turns,
            policy=policy,
            seed=task.seed,
            timings=episode.timings if timings is None else timings,
            error=episode.error,
        )

    @classmethod
    def from_row(cls, row: Mapping[str, Any] | Trajectory) -> Trajectory:
        """A parquet (or Ray Data) row as a record; unknown columns are ignored, nested
        columns may come as numpy arrays, ``policy``/``timings`` as JSON text."""
        if isinstance(row, Trajectory):
            return row
        data = {name: row[name] for name in cls.model_fields if name in row}
        if "conversations" in data:
            turns = data["conversations"]
            turns = turns.tolist() if hasattr(turns, "tolist") else turns
            data["conversations"] = [dict(t) if isinstance(t, Mapping) else t for t in turns or []]
        return cls.model_validate(data)

    def to_row(self) -> dict[str, Any]:
        """The parquet row (``TRAJECTORY_SCHEMA``)."""
        row = self.model_dump()
        row["status"] = self.status.value
        for name in self.JSON_FIELDS:
            row[name] = json.dumps(row[name])
        return row


def arrow_type(annotation: Any, metadata: list[Any] | tuple[Any, ...] = ()) -> pa.DataType:
    """The arrow type of a field: ``ArrowType`` metadata if given, else str/bool/int/float/
    str-Enum -> string/bool/int64/float64/string, ``X | None`` -> X's (columns are
    nullable), ``list[X]`` -> list of X, a TypedDict or model -> struct, a dict -> string
    (JSON text)."""
    for meta in metadata:
        if isinstance(meta, ArrowType):
            return meta.type
    if typing.get_origin(annotation) is Annotated:
        inner, *meta = typing.get_args(annotation)
        return arrow_type(inner, meta)
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"no arrow type for the union {annotation!r}")
        return arrow_type(args[0])
    if origin is list:
        return pa.list_(arrow_type(typing.get_args(annotation)[0]))
    if origin is dict or annotation is dict:
        return pa.string()
    if is_typeddict(annotation):
        hints = typing.get_type_hints(annotation, include_extras=True)
        return pa.struct([(name, arrow_type(hint)) for name, hint in hints.items()])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct(
            [(name, arrow_type(f.annotation, f.metadata)) for name, f in _fields(annotation)]
        )
    simple = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}
    if annotation in simple:
        return simple[annotation]
    if (
        isinstance(annotation, type)
        and issubclass(annotation, Enum)
        and issubclass(annotation, str)
    ):
        return pa.string()
    raise TypeError(f"no arrow type for {annotation!r}")


def _fields(model: type[BaseModel]) -> list[tuple[str, Any]]:
    return [(f.alias or name, f) for name, f in model.model_fields.items()]


def arrow_schema(model: type[BaseModel]) -> pa.Schema:
    """The parquet schema of ``model``'s rows, field by field in declaration order."""
    return pa.schema([(name, arrow_type(f.annotation, f.metadata)) for name, f in _fields(model)])


TRAJECTORY_SCHEMA = arrow_schema(Trajectory)
# the columns every shard has, whatever version wrote it (later ones: ``attempt``)
TRAJECTORY_CORE_COLUMNS = [name for name in TRAJECTORY_SCHEMA.names if name != "attempt"]


def replaces_kept(kept_status: str | None) -> bool:
    """Whether the next row of an id, in write order (sorted shard names, then rows), stands
    for the id instead of the row kept so far (None: no row yet).

    Only a ``task_error`` is replaced: the first row of any other status stands for its id
    for good (a completed episode is kept exactly once, whatever is written after it), and
    an id with only errors is its last row, the latest attempt (a rerun writes its retry
    after the attempt it retries)."""
    return kept_status is None or kept_status == Status.TASK_ERROR.value


class CorruptShardError(RuntimeError):
    """A trajectory shard that cannot be read: ``location`` names it, ``reason`` says why
    (the reader's error, one line)."""

    def __init__(self, location: str, reason: str) -> None:
        super().__init__(f"unreadable trajectory shard {location}: {reason}")
        self.location = location
        self.reason = reason


def read_trajectory_shard(shard: str, columns: list[str]) -> pa.Table:
    """``columns`` of one shard, those it has (older shards lack ``attempt``); raises
    CorruptShardError if it cannot be read or lacks ``id`` or ``status``."""
    fs, path = storage.filesystem(shard)
    try:
        with fs.open_input_file(path) as f:
            parquet = pq.ParquetFile(f)
            names = parquet.schema_arrow.names
            missing = [c for c in ("id", "status") if c in columns and c not in names]
            if missing:
                raise CorruptShardError(shard, f"no {missing} column (not a trajectory shard)")
            return parquet.read(columns=[c for c in columns if c in names])
    except (pa.ArrowException, OSError) as e:  # corrupt data surfaces as either
        reason = " ".join(str(e).split()) or type(e).__name__
        raise CorruptShardError(shard, reason) from None


_ROLE_TO_FROM = {"user": "human", "system": "human", "assistant": "gpt"}
_FROM_TO_ROLE = {"human": "user", "gpt": "assistant", "system": "system"}


def to_conversations(messages: list[Message]) -> list[dict[str, Any]]:
    """Chat messages -> AgentInstruct conversations (a system turn joins the first human)."""
    out: list[dict[str, Any]] = []
    pending_system = ""
    for m in messages:
        role = m["role"]
        if role == "system":
            pending_system += m["content"] + "\n\n"
            continue
        value = m["content"]
        if role == "user" and pending_system:
            value, pending_system = pending_system + value, ""
        loss = None if role == "user" else m.get("loss", True)
        out.append({"from": _ROLE_TO_FROM[role], "loss": loss, "value": value})
    return out


def to_messages(conversations: list[dict[str, Any]]) -> list[Message]:
    """AgentInstruct conversations -> chat messages (``loss`` kept on assistant turns; a
    ``system`` turn, which general data may open with, becomes the system message)."""
    out: list[Message] = []
    for turn in conversations:
        role = _FROM_TO_ROLE.get(turn["from"])
        if role is None:
            raise ValueError(f"unknown speaker {turn['from']!r} (expected human, gpt or system)")
        message: Message = {"role": role, "content": turn["value"]}
        if role == "assistant":
            message["loss"] = turn.get("loss") is not False
        out.append(message)
    return out
