"""Trajectory folders the iterate tests build (imported by its modules as ``iterate_records``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentray.collect import ParquetSink
from agentray.records import Trajectory, to_conversations
from agentray.types import Status


def db_record(task_id: str, answer: str, reward: float, round_: int | None) -> Trajectory:
    """A one-turn db episode: the teacher's (``round_`` None) or one explored in a round."""
    messages = [
        {"role": "user", "content": f"Task {task_id}: count the rows of table t."},
        {"role": "assistant", "content": answer},
    ]
    policy = {"backend": "expert"} if round_ is None else {"backend": "hf", "round": round_}
    return db_trajectory(task_id, messages, reward, policy)


def db_trajectory(
    task_id: str,
    messages: list[dict],
    reward: float,
    policy: dict,
    status: Status = Status.COMPLETED,
) -> Trajectory:
    """The record of a db episode played as ``messages``."""
    return Trajectory(
        id=task_id,
        task="db",
        split="train",
        env_version="db@1",
        conversations=to_conversations(messages),
        reward=reward,
        status=status,
        turns=sum(m["role"] == "assistant" for m in messages),
        policy=policy,
        seed=0,
    )


def trajectory_folder(location: str | Path, records: list[Trajectory], **extra: Any) -> dict:
    """``records`` written by the collect stage's sink at ``location`` (a path or URI); the
    source entry a merge reads (``extra``: more of its keys)."""
    sink = ParquetSink(str(location))
    for record in records:
        assert sink.add(record)
    sink.flush()
    return {"path": str(location), **extra}
