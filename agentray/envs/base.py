"""The Env contract: AgentBench's Task plus a gym-style step.

An env family owns its prompt (``reset`` returns the opening turns: instruction, 1-shot
demonstration with ``loss: False`` on its assistant turns, then the problem), its action
parser and its scorer. One instance runs one episode at a time; instances are cheap and
isolated so hundreds can run at once.

The scripted expert (the offline teacher) is part of the family: ``expert_actions(task)``
returns the full, deterministic action sequence that solves ``task``. Because it depends on
the task alone, any process that can rebuild the task (the expert policy, the test
endpoint) can replay it from a conversation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from agentray.types import Message, StepResult, TaskSpec


class FamilyConfig(BaseModel):
    """Per-family settings; families subclass this with their own fields."""

    model_config = ConfigDict(extra="forbid")

    n_train: int = 50
    n_test: int = 20
    seed: int = 0
    max_rounds: int = 15


class Env(ABC):
    name: ClassVar[str]
    version: ClassVar[str] = "1"
    config_cls: ClassVar[type[FamilyConfig]] = FamilyConfig

    def __init__(self, config: FamilyConfig | None = None) -> None:
        self.config = config or self.config_cls()

    @abstractmethod
    def tasks(self, split: str) -> list[TaskSpec]:
        """All tasks of a split ("train" or "test"), with stable ids."""

    @abstractmethod
    def prompt(self, task: TaskSpec) -> list[Message]:
        """The opening turns for ``task`` (ending with a user turn); pure, no side effects."""

    @abstractmethod
    def reset(self, task: TaskSpec) -> list[Message]:
        """Start an episode (build its state) and return ``self.prompt(task)``."""

    @abstractmethod
    def step(self, action: str) -> StepResult:
        """Apply the agent's full reply; a malformed one is a status, never an exception."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources held by the current episode."""

    @abstractmethod
    def expert_actions(self, task: TaskSpec) -> list[str]:
        """The scripted expert's replies that solve ``task``, in order."""

    @staticmethod
    def problem_of(messages: list[Message]) -> str:
        """The text that identifies the task in a conversation: the last opening user turn.

        Families whose problem text is elsewhere override this.
        """
        return first_user_after_demo(messages)


def first_user_after_demo(messages: list[Message]) -> str:
    """The first user turn after the last demonstration (``loss: False``) turn."""
    last_demo = max((i for i, m in enumerate(messages) if m.get("loss") is False), default=-1)
    for m in messages[last_demo + 1 :]:
        if m["role"] == "user":
            return m["content"]
    raise ValueError("conversation has no user turn after the demonstration")
