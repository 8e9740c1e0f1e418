"""A policy as the ``reply`` of ``agentray.envs.episode.run_episode``: one conversation at a
time, synchronously (tests and benchmarks; the collect engine batches instead)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agentray.envs.base import Env
from agentray.policies.base import EpisodeTask, Policy
from agentray.types import GenerationParams, Message, TaskSpec


def policy_reply(
    policy: Policy,
    params: GenerationParams | None = None,
    env: Env | None = None,
    task: TaskSpec | None = None,
) -> Callable[[list[Message]], str]:
    """``reply(messages)``: the policy's completion of ``messages``; raises on its error.
    With ``env`` and ``task``, each turn carries its episode's task, as in the engine (the
    expert plays the task it is given)."""
    params = params or GenerationParams()
    episode = None
    if env is not None and task is not None:
        episode = EpisodeTask(task=task, family_config=env.config.model_dump(mode="json"))

    def reply(messages: list[Message]) -> str:
        if episode is None:
            [completion] = asyncio.run(policy.generate([messages], params))
        else:
            [completion] = asyncio.run(policy.generate([messages], params, [episode]))
        if completion.error is not None:
            raise RuntimeError(f"the policy failed: {completion.error}")
        return completion.text

    return reply
