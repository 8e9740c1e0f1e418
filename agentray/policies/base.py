"""The Policy contract: chat messages in, text out, for a batch of conversations."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from pydantic import BaseModel, Field

from agentray.types import Completion, GenerationParams, Message, TaskSpec


class EpisodeTask(BaseModel):
    """The task an episode plays, as the env that runs it has it: the TaskSpec (built once,
    by the driver) and its family's config. It travels with each turn to a policy that acts
    on the task (``Policy.needs_tasks``, the expert), so that policy rebuilds no tasks."""

    task: TaskSpec
    family_config: dict[str, Any] = Field(default_factory=dict)


Batch = list[list[Message]]  # conversations to continue
EpisodeTasks = list[EpisodeTask | None] | None  # each conversation's task, where known


class Policy(ABC):
    """A backend that continues conversations. ``generate`` must never raise for one bad
    conversation: it returns a Completion with ``finish_reason="error"`` and ``error`` set."""

    name: str = "policy"
    backend: str = "base"
    # whether ``generate`` uses ``tasks`` (callers may leave them out otherwise)
    needs_tasks: bool = False

    @classmethod
    def from_config(cls, cfg: Any) -> Policy:
        """The backend built from its own config (``agentray.policies.config``)."""
        raise NotImplementedError(f"{cls.__name__} has no config")

    @abstractmethod
    async def generate(
        self, batch: Batch, params: GenerationParams, tasks: EpisodeTasks = None
    ) -> list[Completion]:
        """One completion per conversation; ``tasks[i]`` is conversation i's task where the
        caller knows it (backends that do not need it ignore it)."""

    def describe(self) -> dict:
        """What goes into each trajectory record's ``policy`` field."""
        return {"name": self.name, "backend": self.backend}

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass
