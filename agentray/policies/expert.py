"""The scripted expert as a Policy: the offline teacher.

It sees only the conversation, finds the task it is about (``TaskIndex``) and replies with
the expert's next action: the k-th action of the plan after k agent turns.
"""

from __future__ import annotations

from typing import Any

from agentray.envs.registry import TaskIndex, default_index, family_names
from agentray.policies.base import Policy
from agentray.types import Completion, GenerationParams, Message


def agent_turns_so_far(messages: list[Message]) -> int:
    """Assistant turns after the demonstration (those without ``loss: False``)."""
    return sum(1 for m in messages if m["role"] == "assistant" and m.get("loss") is not False)


def expert_reply(index: TaskIndex, messages: list[Message]) -> str:
    env, task = index.lookup(messages)
    plan = env.expert_actions(task)
    k = agent_turns_so_far(messages)
    return plan[k] if k < len(plan) else plan[-1]


class ExpertPolicy(Policy):
    backend = "expert"

    def __init__(
        self,
        families: list[str] | None = None,
        family_configs: dict[str, dict[str, Any]] | None = None,
        index: TaskIndex | None = None,
    ):
        self.name = "expert"
        names = families or family_names()
        if index is None and family_configs:
            index = TaskIndex({name: family_configs.get(name) for name in names})
        self.index = index or default_index(tuple(names))

    async def generate(
        self, batch: list[list[Message]], params: GenerationParams
    ) -> list[Completion]:
        out = []
        for messages in batch:
            try:
                out.append(Completion(text=expert_reply(self.index, messages)))
            except Exception as e:  # an unknown task is this conversation's error only
                out.append(Completion(text="", finish_reason="error", error=repr(e)))
        return out
