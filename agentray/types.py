"""Contracts shared by every stage: chat messages, env steps, completions.

A ``Message`` is an OpenAI-style chat dict ``{"role", "content"}`` with one optional key,
``"loss"``: ``False`` marks an assistant turn that is part of a demonstration (it is kept
in the conversation but never trained on). Everything else is plain data so that it
crosses Ray's object store and parquet unchanged.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict  # pydantic validates these only (Python < 3.12)


class _MessageBase(TypedDict):
    role: str  # "system" | "user" | "assistant"
    content: str


class Message(_MessageBase, total=False):
    loss: bool


class Status(str, Enum):
    """AgentBench's sample statuses."""

    RUNNING = "running"
    COMPLETED = "completed"
    AGENT_INVALID_ACTION = "agent_invalid_action"
    TASK_LIMIT_REACHED = "task_limit_reached"
    AGENT_CONTEXT_LIMIT = "agent_context_limit"
    TASK_ERROR = "task_error"


class TaskSpec(BaseModel):
    """One task of one family. ``payload`` is whatever the family needs to rebuild it."""

    id: str  # stable, e.g. "db_0", "os_17"
    family: str
    split: str  # "train" | "test"
    seed: int
    payload: dict[str, Any] = Field(default_factory=dict)


class StepResult(BaseModel):
    observation: str | None
    done: bool
    reward: float = 0.0
    status: Status = Status.RUNNING
    info: dict[str, Any] = Field(default_factory=dict)


class GenerationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt knob must not silently do nothing

    max_new_tokens: int = Field(512, description="tokens generated per turn at most")
    temperature: float = Field(0.0, description="0 = greedy")
    top_p: float = Field(1.0, description="nucleus sampling mass")
    stop: list[str] = Field(default_factory=list, description="stop strings")


class Completion(BaseModel):
    """One generated turn. Token ids are kept where the backend has them (token-in-token-out)."""

    text: str
    finish_reason: str = "stop"  # "stop" | "length" | "context_limit" | "error"
    prompt_token_ids: list[int] | None = None
    token_ids: list[int] | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
