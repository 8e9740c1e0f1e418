"""Play a task's scripted expert straight against its env (no Ray, no policy).

The offline way to get a real trajectory: benchmarks, tests and data fixtures use it.
"""

from __future__ import annotations

from agentray.envs.base import Env
from agentray.envs.episode import run_episode, scripted
from agentray.records import EpisodeResult, Trajectory, env_version_of
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


def expert_trajectory(env: Env, task: TaskSpec) -> Trajectory:
    """A trajectory record (the parquet row collection writes) of the expert on ``task``."""
    messages, result = play_expert(env, task)
    episode = EpisodeResult(messages=messages, timings={})  # not timed
    episode.finish(result.reward, result.status)
    return Trajectory.from_episode(
        task,
        episode,
        env_version=env_version_of(task.family, env.version),
        policy={"name": "expert", "backend": "expert"},  # as ExpertPolicy.describe() says
    )
