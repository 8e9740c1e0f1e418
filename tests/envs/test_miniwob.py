"""The MiniWoB++ family in real headless Chromium: the expert, statuses, the rollout engine."""

from __future__ import annotations

import asyncio
import os
import shutil

import pytest
from pydantic import ValidationError

pytest.importorskip(
    "miniwob", reason="MiniWoB++ is an optional extra: pip install 'agentray[heldout]'"
)
if not os.environ.get("MINIWOB_CHROME_BINARY") and not (
    shutil.which("chromium") and shutil.which("chromedriver")
):
    pytest.skip(
        "MiniWoB++ needs chromium and chromedriver: apt-get install chromium chromium-driver",
        allow_module_level=True,
    )

from agentray.envs.base import Env  # noqa: E402
from agentray.envs.miniwob import MiniWoBConfig, MiniWoBEnv  # noqa: E402
from agentray.envs.miniwob.actions import parse_action  # noqa: E402
from agentray.envs.miniwob.browsers import BROWSERS  # noqa: E402
from agentray.envs.miniwob.prompt import INSTRUCTION, OK_REPLY  # noqa: E402
from agentray.envs.registry import family_names, make_env  # noqa: E402
from agentray.types import Status  # noqa: E402

SMALL = MiniWoBConfig(n_train=5, n_test=5, max_rounds=4)


@pytest.fixture(scope="module")
def env():
    env = MiniWoBEnv(SMALL)
    yield env
    env.close()


def test_expert_solves_every_task(env):
    tasks = env.tasks("train") + env.tasks("test")
    assert {t.payload["subdomain"] for t in tasks} == set(SMALL.task_types)
    for task in tasks:
        env.reset(task)
        plan = env.expert_actions(task)
        for i, action in enumerate(plan):
            result = env.step(action)
            assert result.done == (i == len(plan) - 1), (task.id, i, action, result)
        assert result.status == Status.COMPLETED and result.reward == 1.0, (task.id, result)
        assert result.info["raw_reward"] > 0
        assert env.step(plan[-1]).status == Status.TASK_ERROR  # the episode is over


def test_tasks_are_seeded_unique_and_stable(env):
    train, test = env.tasks("train"), env.tasks("test")
    assert [t.id for t in train + test] == [f"miniwob_{i}" for i in range(10)]
    assert not {t.seed for t in train} & {t.seed for t in test}
    problems = [Env.problem_of(env.prompt(t)) for t in train + test]
    assert len(set(problems)) == len(problems)
    # the page is the seed's: a fresh env (its own browser) sees the recorded first page
    other = make_env("miniwob", SMALL.model_dump())
    for task in test:
        other.reset(task)
        assert other.step(other.expert_actions(task)[0]).status != Status.TASK_ERROR
    other.close()


def test_prompt_layout(env):
    task = next(t for t in env.tasks("test") if t.payload["subdomain"] == "enter-text")
    messages = env.prompt(task)
    assert messages[0] == {"role": "user", "content": INSTRUCTION}
    assert messages[1] == {"role": "assistant", "content": OK_REPLY, "loss": False}
    assert messages[2]["content"].startswith("Here is one example.\nTask: Enter ")
    assert all(m["loss"] is False for m in messages if m["role"] == "assistant")
    problem = messages[-1]["content"]
    assert problem.startswith(f"Here is your task.\nTask: {task.payload['utterance']}\nPage:\n")
    assert "input_text id=tt" in problem and Env.problem_of(messages) == problem


def test_bad_replies_unknown_refs_wrong_clicks_and_round_limit(env):
    task = next(
        t
        for t in env.tasks("train") + env.tasks("test")
        if t.payload["subdomain"] == "click-button"
        and sum(e["tag"] == "button" for e in t.payload["elements"]) > 1
    )
    for reply in ["click(4)", "Action: press(4)", "Action: click(four)", "Action: type(5, x)"]:
        env.reset(task)
        result = env.step(reply)
        assert result.done and result.status == Status.AGENT_INVALID_ACTION, reply
        assert result.reward == 0.0 and result.observation is None
    assert MiniWoBEnv.action_problem("Thought: hmm") is not None
    assert MiniWoBEnv.action_problem('Thought: go\naction: type(5, "a b")') is None
    assert parse_action('Action: type(5, "say \\"hi\\"")') == ("type", 5, 'say \\"hi\\"')

    env.reset(task)
    result = env.step("Action: click(999)")
    assert result.observation == "There is no element [999]." and not result.done
    target = task.payload["plan"][0][1]
    wrong = next(
        e["ref"] for e in task.payload["elements"] if e["tag"] == "button" and e["ref"] != target
    )
    result = env.step(f"Action: click({wrong})")  # MiniWoB++ ends the episode: a failure
    assert result.done and result.status == Status.COMPLETED and result.reward == 0.0
    assert result.info["raw_reward"] <= 0

    env.reset(task)
    for _ in range(SMALL.max_rounds - 1):
        assert not env.step("Action: click(1)").done  # the body: nothing happens
    result = env.step("Action: click(1)")
    assert result.done and result.status == Status.TASK_LIMIT_REACHED
    assert result.observation.startswith("Task: ")


def test_browsers_are_reused_across_episodes(env):
    tasks = env.tasks("test")
    for task in tasks:
        env.reset(task)
    before = BROWSERS.started
    for task in tasks * 2:
        env.reset(task)
    env.close()
    assert BROWSERS.started == before  # every task type already has its browser


def test_family_is_held_out_and_config_is_typed():
    assert "miniwob" not in family_names() and "miniwob" in family_names(held_out=True)
    with pytest.raises(ValidationError, match="click-link"):  # names the allowed values
        MiniWoBConfig(task_types=["book-flight"])


@pytest.mark.slow
def test_expert_episodes_run_through_the_rollout_engine(ray_local, tmp_path):
    from agentray.collect.config import RolloutConfig
    from agentray.collect.engine import RolloutEngine, load_tasks
    from agentray.collect.sink import ParquetSink, read_trajectories
    from agentray.policies.registry import ExpertConfig

    configs = {"miniwob": SMALL.model_dump()}
    rollout = RolloutConfig(max_in_flight=2, num_env_pools=1, envs_per_pool=2, flush_every=2)
    policy = ExpertConfig()
    engine = RolloutEngine(rollout, policy, configs)
    tasks = load_tasks(["miniwob"], "test", configs)
    try:
        asyncio.run(engine.run(tasks, ParquetSink(tmp_path / "t"), progress=False))
    finally:
        engine.shutdown()
    records = read_trajectories(tmp_path / "t")
    assert sorted(r.id for r in records) == sorted(t.id for t in tasks)
    for record in records:
        assert (record.status, record.reward) == ("completed", 1.0), record.error
        assert any(t["loss"] is False for t in record.conversations)
