"""The one loop that plays an episode outside the collect engine: a reply function against
an env, turn by turn (the expert in tests and fixtures, proposal checks, benchmarks)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from agentray.envs.base import Env
from agentray.types import Message, StepResult, TaskSpec


class Episode(NamedTuple):
    """One played episode: the conversation, the final step and how long the env took."""

    messages: list[Message]
    result: StepResult
    reset_s: float
    step_s: list[float]  # one per reply


def run_episode(
    env: Env, task: TaskSpec, reply: Callable[[list[Message]], str | None], close: bool = False
) -> Episode:
    """Play ``task`` in ``env``: ``reply(messages)`` writes each agent turn (None: stop).

    Stops when the env says done or ``reply`` has nothing more; the final result is then
    the last step's (a not-done one when no step was played). ``close``: close the env
    afterwards, also when an exception ends the episode.
    """
    try:
        t0 = time.perf_counter()
        messages = env.reset(task)
        reset_s = time.perf_counter() - t0
        result = StepResult(observation=None, done=False)
        step_s: list[float] = []
        while (text := reply(messages)) is not None:
            messages.append({"role": "assistant", "content": text})
            t0 = time.perf_counter()
            result = env.step(text)
            step_s.append(time.perf_counter() - t0)
            if result.done:
                break
            messages.append({"role": "user", "content": result.observation or ""})
        return Episode(messages, result, reset_s, step_s)
    finally:
        if close:
            env.close()


def scripted(actions: Iterable[str]) -> Callable[[list[Message]], str | None]:
    """A ``reply`` for ``run_episode`` that plays ``actions`` in order, then stops."""
    remaining = iter(actions)
    return lambda messages: next(remaining, None)
