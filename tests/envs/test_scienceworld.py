"""The ScienceWorld family on the real simulator: gold paths, statuses, the rollout engine."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

pytest.importorskip(
    "scienceworld",
    reason="ScienceWorld is an optional extra: pip install 'agentray[heldout]' (needs Java 17)",
)

from agentray.envs.base import Env  # noqa: E402
from agentray.envs.registry import family_names, make_env  # noqa: E402
from agentray.envs.scienceworld import ScienceWorldConfig, ScienceWorldEnv  # noqa: E402
from agentray.envs.scienceworld.prompt import INSTRUCTION, OK_REPLY  # noqa: E402
from agentray.envs.scienceworld.simulators import SIMULATORS  # noqa: E402
from agentray.envs.scienceworld.tasks import parse_action  # noqa: E402
from agentray.types import Status  # noqa: E402

# Two task types with short gold paths keep the (disk-cached) task build to seconds.
SMALL = ScienceWorldConfig(
    task_types=["lifespan-longest-lived", "find-living-thing"], n_train=2, n_test=2, max_rounds=20
)
TRAIN_VARIATIONS = {"lifespan-longest-lived": range(62), "find-living-thing": range(150)}
TEST_VARIATIONS = {"lifespan-longest-lived": range(93, 125), "find-living-thing": range(225, 300)}


@pytest.fixture(scope="module")
def env():
    env = ScienceWorldEnv(SMALL)
    yield env
    env.close()


def test_gold_path_scores_100_on_every_task(env):
    for task in env.tasks("train") + env.tasks("test"):
        env.reset(task)
        plan = env.expert_actions(task)
        assert plan and len(plan) <= SMALL.max_rounds
        for action in plan:  # a gold path may reach 100 before its last step (a final wait1)
            result = env.step(action)
            if result.done:
                break
        assert result.status == Status.COMPLETED, (task.id, result)
        assert result.reward == 1.0 and result.info["score"] == 100, (task.id, result)
        assert env.step(plan[-1]).status == Status.TASK_ERROR  # the episode is over


def test_tasks_come_from_scienceworlds_own_splits(env):
    train, test = env.tasks("train"), env.tasks("test")
    assert [t.id for t in train + test] == [f"scienceworld_{i}" for i in range(4)]
    assert [t.payload["task_type"] for t in train] == SMALL.task_types
    for tasks, allowed in ((train, TRAIN_VARIATIONS), (test, TEST_VARIATIONS)):
        for task in tasks:
            assert task.payload["variation"] in allowed[task.payload["task_type"]], task
    problems = [Env.problem_of(env.prompt(t)) for t in train + test]
    assert len(set(problems)) == len(problems)
    assert [t.model_dump() for t in train] == [
        t.model_dump() for t in ScienceWorldEnv(SMALL).tasks("train")
    ]


def test_prompt_layout(env):
    task = env.tasks("test")[1]
    messages = env.prompt(task)
    assert messages[0] == {"role": "user", "content": INSTRUCTION}
    assert messages[1] == {"role": "assistant", "content": OK_REPLY, "loss": False}
    assert messages[2]["content"].startswith("Here is one example.\nTask: Your task is to find")
    assert all(m["loss"] is False for m in messages if m["role"] == "assistant")
    assert all("loss" not in m for m in messages if m["role"] == "user")
    problem = messages[-1]["content"]
    assert problem.startswith(f"Here is your task.\nTask: {task.payload['description']}\n")
    assert "This room is called" in problem and Env.problem_of(messages) == problem
    bare = ScienceWorldEnv(SMALL.model_copy(update={"one_shot": False}))
    assert [m["role"] for m in bare.prompt(task)] == ["user", "assistant", "user"]


def test_replies_without_an_action_end_as_invalid_action(env):
    task = env.tasks("train")[0]
    for reply in ["look around", "Thought: I should look.", "Action:", "Action:  \nlook around"]:
        env.reset(task)
        result = env.step(reply)
        assert result.done and result.status == Status.AGENT_INVALID_ACTION, reply
        assert result.reward == 0.0 and result.observation is None
    assert ScienceWorldEnv.action_problem("Thought: hmm") == "no `Action:` line"
    assert ScienceWorldEnv.action_problem("Thought: go.\naction: go to kitchen") is None
    assert parse_action("Thought: x\nAction: open door to kitchen\nAction: wait") == (
        "open door to kitchen"
    )


def test_unknown_commands_fail_focus_and_round_limit(env):
    task = env.tasks("train")[1]  # find-living-thing
    env.reset(task)
    result = env.step("Action: fly to the moon")
    assert result.observation == "No known action matches that input."
    assert result.status == Status.RUNNING and not result.done
    result = env.step("Action: focus on air")  # the wrong object: ScienceWorld fails the task
    assert result.done and result.status == Status.COMPLETED
    assert result.reward == 0.0 and result.info["score"] < 0

    env.reset(task)
    for _ in range(SMALL.max_rounds - 1):
        assert not env.step("Action: look around").done
    result = env.step("Action: look around")
    assert result.done and result.status == Status.TASK_LIMIT_REACHED
    assert result.observation.startswith("This room is called")


def test_simulators_are_reused_across_envs_and_episodes(env):
    before = SIMULATORS.started
    tasks = env.tasks("test") + env.tasks("train")
    for task in tasks:  # one env per episode, as an EnvPool makes them
        other = make_env("scienceworld", SMALL.model_dump())
        other.reset(task)
        assert other.step(other.expert_actions(task)[0]).status == Status.RUNNING
        other.close()
    assert SIMULATORS.started - before <= 1  # one JVM, started at most once, served all four


def test_family_is_held_out_and_config_is_typed():
    assert "scienceworld" not in family_names() and "scienceworld" in family_names(held_out=True)
    with pytest.raises(ValidationError, match="use-thermometer"):  # names the allowed values
        ScienceWorldConfig(task_types=["make-coffee"])
    with pytest.raises(ValidationError, match="not_a_field"):
        ScienceWorldConfig(not_a_field=1)


@pytest.mark.slow
def test_expert_episodes_run_through_the_rollout_engine(ray_local, tmp_path):
    from agentray.collect.config import RolloutConfig
    from agentray.collect.engine import RolloutEngine, load_tasks
    from agentray.collect.sink import ParquetSink, read_trajectories
    from agentray.policies.registry import ExpertConfig

    configs = {"scienceworld": SMALL.model_dump()}
    rollout = RolloutConfig(max_in_flight=2, num_env_pools=1, envs_per_pool=2, flush_every=2)
    engine = RolloutEngine(rollout, ExpertConfig(), configs)
    tasks = load_tasks(["scienceworld"], "test", configs)
    try:
        asyncio.run(engine.run(tasks, ParquetSink(tmp_path / "t"), progress=False))
    finally:
        engine.shutdown()
    records = read_trajectories(tmp_path / "t")
    assert sorted(r.id for r in records) == sorted(t.id for t in tasks)
    for record in records:
        assert (record.status, record.reward) == ("completed", 1.0), record.error
        turns = record.conversations
        assert any(t["loss"] is False for t in turns)  # the 1-shot demonstration
        assert turns[-1]["from"] == "gpt" and turns[-1]["value"].startswith("Action: ")
