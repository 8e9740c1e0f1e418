"""Trajectory rows -> AgentInstruct records, with a reason for every row set aside.

A kept row becomes ``{id, source: "agent", family, conversations}`` where
``conversations`` is the public AgentInstruct schema (``from``/``loss``/``value``). A row
that is not kept carries ``reject_reason`` instead, so nothing leaves the pipeline
without being counted.
"""

from __future__ import annotations

import json
import math
from typing import Any

from agentray.data.config import ProcessConfig

SPEAKERS = ("human", "gpt")


def as_list(value: Any) -> list:
    """Ray Data hands nested columns over as numpy arrays; the rest of the code wants lists."""
    if value is None:
        return []
    return list(value.tolist() if hasattr(value, "tolist") else value)


def conversation_problem(turns: list[dict[str, Any]]) -> str | None:
    """Why ``turns`` is not a trainable AgentInstruct conversation, or None if it is."""
    if not turns:
        return "malformed: empty conversation"
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or turn.get("from") not in SPEAKERS:
            return f"malformed: turn {i} has speaker {_speaker(turn)!r} (expected human|gpt)"
        if not isinstance(turn.get("value"), str):
            return f"malformed: turn {i} has no text"
        expected = SPEAKERS[i % 2]
        if turn["from"] != expected:
            return (
                f"malformed: turn {i} is {turn['from']!r}, expected {expected!r} (turns alternate)"
            )
    if not any(t["from"] == "gpt" and t.get("loss") is not False for t in turns):
        return "malformed: no assistant turn to train on"
    return None


def _speaker(turn: Any) -> Any:
    return turn.get("from") if isinstance(turn, dict) else type(turn).__name__


def trajectory_reject_reason(row: dict[str, Any], cfg: ProcessConfig) -> str | None:
    status = row.get("status")
    if status not in cfg.keep_statuses:
        return f"status {status}"
    reward = row.get("reward")
    if reward is None or (isinstance(reward, float) and math.isnan(reward)):
        return "malformed: no reward"
    threshold = cfg.threshold_for(row.get("task") or "")
    if reward < threshold:
        return f"reward below {threshold:.3g}"
    return conversation_problem(_conversations(row))


def _conversations(row: dict[str, Any]) -> list[dict[str, Any]]:
    turns = as_list(row.get("conversations"))
    return [dict(t) if isinstance(t, dict) else t for t in turns]


def classify_trajectory(row: dict[str, Any], cfg: ProcessConfig) -> dict[str, Any]:
    """One output row per trajectory: the AgentInstruct record, or the reason it was not kept.

    ``conversations`` travels as JSON text between stages of the Ray Data pipeline, so
    kept and rejected rows share one flat schema."""
    reason = trajectory_reject_reason(row, cfg)
    return {
        "id": str(row.get("id")),
        "source": "agent",
        "family": str(row.get("task") or "unknown"),
        "conversations": "" if reason else json.dumps(_clean_turns(_conversations(row))),
        "reject_reason": reason or "",
    }


def _clean_turns(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "from": t["from"],
            "loss": None if t["from"] == "human" else t.get("loss") is not False,
            "value": t["value"],
        }
        for t in turns
    ]
