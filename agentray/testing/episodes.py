"""A policy as the ``reply`` of ``agentray.envs.episode.run_episode``: one conversation at a
time, synchronously (tests and benchmarks; the collect engine batches instead)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from agentray.types import GenerationParams, Message


def policy_reply(
    policy: Any, params: GenerationParams | None = None
) -> Callable[[list[Message]], str]:
    """``reply(messages)``: the policy's completion of ``messages``; raises on its error."""
    params = params or GenerationParams()

    def reply(messages: list[Message]) -> str:
        [completion] = asyncio.run(policy.generate([messages], params))
        if completion.error is not None:
            raise RuntimeError(f"the policy failed: {completion.error}")
        return completion.text

    return reply
