"""The Trajectory record: one parquet row per episode.

``conversations`` is exactly the public AgentInstruct schema: a list of
``{"from": "human"|"gpt", "loss": bool|None, "value": str}`` where human turns carry
``loss: None``, demonstration answers ``loss: False`` and the agent's own answers
``loss: True``. The public dataset therefore loads as-is.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from agentray.types import Message

CONVERSATION_TYPE = pa.list_(
    pa.struct([("from", pa.string()), ("loss", pa.bool_()), ("value", pa.string())])
)

TRAJECTORY_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("task", pa.string()),  # family, e.g. "db"
        ("split", pa.string()),
        ("env_version", pa.string()),
        ("conversations", CONVERSATION_TYPE),
        ("reward", pa.float64()),
        ("status", pa.string()),
        ("turns", pa.int32()),
        ("policy", pa.string()),  # JSON: name, backend, params
        ("seed", pa.int64()),
        ("timings", pa.string()),  # JSON: wall_s, policy_s, env_s
        ("error", pa.string()),
        ("response_token_ids", pa.list_(pa.list_(pa.int32()))),  # per agent turn, if known
    ]
)

_ROLE_TO_FROM = {"user": "human", "system": "human", "assistant": "gpt"}
_FROM_TO_ROLE = {"human": "user", "gpt": "assistant"}


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
    """AgentInstruct conversations -> chat messages (``loss`` kept on assistant turns)."""
    out: list[Message] = []
    for turn in conversations:
        role = _FROM_TO_ROLE.get(turn["from"])
        if role is None:
            raise ValueError(f"unknown speaker {turn['from']!r} (expected human or gpt)")
        message: Message = {"role": role, "content": turn["value"]}
        if role == "assistant":
            message["loss"] = turn.get("loss") is not False
        out.append(message)
    return out
