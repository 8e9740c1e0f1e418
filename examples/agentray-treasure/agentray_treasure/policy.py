"""A policy backend from outside the tree: a guide that knows each house, dawdles a few
turns, then walks to the key and the chest (entry point ``wandering_guide``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from agentray.policies.base import Batch, EpisodeTasks, Policy
from agentray.types import Completion, GenerationParams
from agentray_treasure.env import walkthrough


class GuideOptions(BaseModel):
    """The guide's own settings (``policy.options`` in a config), typed at load."""

    model_config = ConfigDict(extra="forbid")

    detours: int = Field(1, ge=0, description="turns spent staying put before the walkthrough")


class WanderingGuide(Policy):
    backend = "wandering_guide"
    needs_tasks = True  # it reads each episode's house from its task
    options_cls = GuideOptions

    def __init__(self, options: GuideOptions) -> None:
        self.options = options
        self.name = f"wandering_guide(detours={options.detours})"

    @classmethod
    def from_config(cls, cfg) -> WanderingGuide:
        return cls(GuideOptions(**cfg.options))

    async def generate(
        self, batch: Batch, params: GenerationParams, tasks: EpisodeTasks = None
    ) -> list[Completion]:
        tasks = tasks if tasks is not None else [None] * len(batch)
        return [self._reply(messages, task) for messages, task in zip(batch, tasks, strict=True)]

    def _reply(self, messages, task) -> Completion:
        if task is None:
            return Completion(text="", finish_reason="error", error="the guide needs the task")
        played = sum(1 for m in messages if m["role"] == "assistant" and m.get("loss") is not False)
        start = task.task.payload["start"]
        if played < self.options.detours:
            return Completion(text=f"Let me look around.\nAction: go {start}")
        return Completion(text=walkthrough(task.task.payload)[played - self.options.detours])
