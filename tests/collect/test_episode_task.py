"""Tasks are built once, by the driver, and travel with their episodes: the expert plays
the task it is given, so a family whose tasks differ from process to process still gets
reward 1 on every episode (the old text lookup rebuilt the tasks in the PolicyActor's
process and found none of the driver's)."""

from __future__ import annotations

import asyncio

import pytest

from agentray.collect.config import CollectConfig, RolloutConfig
from agentray.collect.engine import load_tasks
from agentray.collect.run import run_collect
from agentray.collect.sink import read_trajectories
from agentray.policies.registry import ExpertConfig
from agentray.testing.per_process_env import NAME

N_TASKS = 8


@pytest.mark.slow
def test_expert_plays_the_task_its_episode_carries(ray_local, tmp_path):
    @ray_local.remote
    def problems_built_in_a_worker() -> list[dict]:
        return [t.payload for t in load_tasks([NAME], "train", None, N_TASKS)]

    driver_tasks = load_tasks([NAME], "train", None, N_TASKS)
    worker_payloads = ray_local.get(problems_built_in_a_worker.remote())
    # the premise: another process builds other tasks under the same ids
    assert [t.payload for t in driver_tasks] != worker_payloads

    cfg = CollectConfig(
        families=[NAME],
        max_tasks_per_family=N_TASKS,
        policy=ExpertConfig(),
        rollout=RolloutConfig(
            max_in_flight=4, num_env_pools=2, envs_per_pool=4, num_policy_actors=2, metrics=False
        ),
    )
    summary = run_collect(cfg, tmp_path, progress=False)
    rows = read_trajectories(tmp_path / "collect" / "trajectories")
    assert len(rows) == N_TASKS and {r.task for r in rows} == {NAME}
    assert all(r.reward == 1.0 and r.status == "completed" for r in rows), [
        (r.id, r.status, r.error) for r in rows
    ]
    assert summary["families"][NAME]["success_rate"] == 1.0


def test_the_expert_needs_the_task_not_the_text():
    """Without its task a conversation is that conversation's error (no lookup by text)."""
    from agentray.envs.registry import make_env
    from agentray.policies.base import EpisodeTask
    from agentray.policies.expert import ExpertPolicy
    from agentray.types import GenerationParams

    env = make_env("webshop", {"n_products": 100, "n_train": 2, "n_test": 1})
    task = env.tasks("train")[0]
    messages = env.reset(task)
    policy = ExpertPolicy()
    config = env.config.model_dump(mode="json")
    given, missing = asyncio.run(
        policy.generate(
            [messages, messages],
            GenerationParams(),
            [EpisodeTask(task=task, family_config=config), None],
        )
    )
    assert given.error is None and given.text == env.expert_actions(task)[0]
    assert missing.finish_reason == "error" and "EpisodeTask" in missing.error
