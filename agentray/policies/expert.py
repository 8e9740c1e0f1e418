"""The scripted expert as a Policy: the offline teacher.

Each conversation comes with the task its episode plays (``EpisodeTask``: the TaskSpec the
driver built and its family's config), and the expert replies with that task's k-th
expert action after k agent turns. It rebuilds no tasks and needs no config of its own.

Where only the conversation's text exists (the OpenAI-compatible test endpoint), the
task is found from its problem text instead (``expert_reply`` over a ``TaskIndex``).
"""

from __future__ import annotations

import json
from typing import Any

from agentray.envs.base import Env
from agentray.envs.registry import TaskIndex, make_env
from agentray.policies.base import Batch, EpisodeTask, EpisodeTasks, Policy
from agentray.types import Completion, GenerationParams, Message, TaskSpec


def agent_turns_so_far(messages: list[Message]) -> int:
    """Assistant turns after the demonstration (those without ``loss: False``)."""
    return sum(1 for m in messages if m["role"] == "assistant" and m.get("loss") is not False)


def next_action(env: Env, task: TaskSpec, messages: list[Message]) -> str:
    """The expert's reply to ``messages``: the k-th action of ``task``'s plan after k agent
    turns (the last one again past the plan's end)."""
    plan = env.expert_actions(task)
    k = agent_turns_so_far(messages)
    return plan[k] if k < len(plan) else plan[-1]


def expert_reply(index: TaskIndex, messages: list[Message]) -> str:
    """The expert's reply when only the text is known: the task is looked up from it."""
    env, task = index.lookup(messages)
    return next_action(env, task, messages)


class ExpertPolicy(Policy):
    backend = "expert"
    needs_tasks = True

    def __init__(self) -> None:
        self.name = "expert"
        self._envs: dict[tuple[str, str], Env] = {}

    @classmethod
    def from_config(cls, cfg: Any = None) -> ExpertPolicy:
        return cls()

    def env_for(self, episode: EpisodeTask) -> Env:
        """An env of the task's family with the episode's family config (one per config)."""
        family = episode.task.family
        key = (family, json.dumps(episode.family_config, sort_keys=True, default=str))
        if key not in self._envs:
            self._envs[key] = make_env(family, episode.family_config)
        return self._envs[key]

    async def generate(
        self, batch: Batch, params: GenerationParams, tasks: EpisodeTasks = None
    ) -> list[Completion]:
        tasks = tasks if tasks is not None else [None] * len(batch)
        out = []
        for messages, episode in zip(batch, tasks, strict=True):
            try:
                if episode is None:
                    raise ValueError(
                        "the expert needs each conversation's task (EpisodeTask); "
                        "it got only the text"
                    )
                text = next_action(self.env_for(episode), episode.task, messages)
                out.append(Completion(text=text))
            except Exception as e:  # a task it cannot play is this conversation's error only
                out.append(Completion(text="", finish_reason="error", error=repr(e)))
        return out
