"""Play a task's scripted expert straight against its env (no Ray, no policy).

The offline way to get a real trajectory: benchmarks, tests and data fixtures use it.
"""

from __future__ import annotations

from typing import Any

from agentray.envs.base import Env
from agentray.envs.episode import run_episode, scripted
from agentray.records import to_conversations
from agentray.types import Message, StepResult, TaskSpec


def play_expert(
    env: Env, task: TaskSpec, actions: list[str] | None = None
) -> tuple[list[Message], StepResult]:
    """The conversation and the final step of an episode played with ``actions`` (default:
    the expert's). Stops when the env says done or the actions run out."""
    plan = None if actions is None else scripted(actions)

    def reply(messages: list[Message]) -> str | None:
        nonlocal plan
        if plan is None:  # the expert's plan, once the episode has started
            plan = scripted(env.expert_actions(task))
        return plan(messages)

    episode = run_episode(env, task, reply)
    return episode.messages, episode.result


def expert_trajectory(env: Env, task: TaskSpec) -> dict[str, Any]:
    """A trajectory record (the parquet row collection writes) of the expert on ``task``."""
    messages, result = play_expert(env, task)
    return {
        "id": task.id,
        "task": task.family,
        "split": task.split,
        "env_version": env.version,
        "conversations": to_conversations(messages),
        "reward": result.reward,
        "status": result.status.value,
        "turns": sum(1 for m in messages if m["role"] == "assistant" and m.get("loss", True)),
        "policy": '{"name": "expert"}',
        "seed": task.seed,
        "timings": "{}",
        "error": None,
        "response_token_ids": [],
    }
