"""Play a task's scripted expert straight against its env (no Ray, no policy).

The offline way to get a real trajectory: benchmarks, tests and data fixtures use it.
"""

from __future__ import annotations

from agentray.envs.base import Env
from agentray.records import EpisodeResult, Trajectory, env_version_of
from agentray.types import Message, StepResult, TaskSpec


def play_expert(
    env: Env, task: TaskSpec, actions: list[str] | None = None
) -> tuple[list[Message], StepResult]:
    """The conversation and the final step of an episode played with ``actions`` (default:
    the expert's). Stops when the env says done or the actions run out."""
    messages = env.reset(task)
    result = StepResult(observation=None, done=False)
    for action in env.expert_actions(task) if actions is None else actions:
        messages.append({"role": "assistant", "content": action})
        result = env.step(action)
        if result.done:
            break
        messages.append({"role": "user", "content": result.observation or ""})
    return messages, result


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
