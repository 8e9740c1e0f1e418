"""The Mind2Web family: generation, MindAct prompt layout, teacher-forced scoring, statuses."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from agentray.envs.base import Env
from agentray.envs.mind2web import Mind2WebConfig, Mind2WebEnv
from agentray.envs.mind2web.prompt import gold_reply, step_prompt
from agentray.envs.mind2web.score import op_f1, parse_reply, score_step
from agentray.envs.mind2web.tasks import TEMPLATES
from agentray.records import to_conversations
from agentray.types import Status

SAMPLE = Mind2WebConfig(n_train=60, n_test=20, seed=3)


def _env(**overrides) -> Mind2WebEnv:
    return Mind2WebEnv(SAMPLE.model_copy(update=overrides))


def _wrong_letter(step: dict) -> str:
    return chr(66 + (step["answer"] + 1) % len(step["choices"]))


def test_expert_scores_one_on_every_sampled_task():
    env = _env()
    tasks = env.tasks("train") + env.tasks("test")
    assert len(tasks) == 80
    assert {t.payload["template"] for t in tasks} == {f.__name__[1:] for f in TEMPLATES}
    for task in tasks:
        steps = task.payload["steps"]
        assert 3 <= len(steps) <= 8
        env.reset(task)
        actions = env.expert_actions(task)
        assert len(actions) == len(steps)
        for i, action in enumerate(actions):
            result = env.step(action)
            assert result.done == (i == len(steps) - 1), (task.id, i)
        assert result.status == Status.COMPLETED and result.reward == 1.0, (task.id, result)
        assert result.info["element_acc"] == result.info["action_f1"] == 1.0
    assert {s["op"] for t in tasks for s in t.payload["steps"]} == {"CLICK", "TYPE", "SELECT"}


def test_generation_is_deterministic_with_disjoint_unique_splits():
    a, b = _env(), Mind2WebEnv(Mind2WebConfig(n_train=60, n_test=20, seed=3))
    train, test = a.tasks("train"), a.tasks("test")
    assert [t.model_dump() for t in train + test] == [
        t.model_dump() for t in b.tasks("train") + b.tasks("test")
    ]
    assert [t.id for t in train] == [f"mind2web_{i}" for i in range(60)]
    assert [t.id for t in test] == [f"mind2web_{i}" for i in range(60, 80)]
    problems = [Env.problem_of(a.prompt(t)) for t in train + test]
    assert len(set(problems)) == len(problems)
    json.dumps([t.payload for t in train + test])  # payloads cross parquet / Ray as JSON
    other = Mind2WebEnv(Mind2WebConfig(n_train=60, n_test=20, seed=4)).tasks("train")
    assert [t.payload for t in other] != [t.payload for t in train]
    bigger = Mind2WebEnv(Mind2WebConfig(n_train=60, n_test=25, seed=3))
    assert [t.payload for t in bigger.tasks("train")] == [t.payload for t in train]
    assert [t.payload for t in bigger.tasks("test")[:20]] == [t.payload for t in test]


def test_step_prompt_is_mindact_multiple_choice():
    env = _env(n_candidates=4)
    task = env.tasks("train")[0]
    for k, step in enumerate(task.payload["steps"]):
        text = step_prompt(task.payload, k)
        html = text.split("'''")[1]
        assert html.strip().startswith("<html>") and html.strip().endswith("</html>")
        assert f"Task: {task.payload['goal']}\nPrevious actions:\n" in text
        letters = re.findall(r"^([A-Z])\. ", text.split("choices")[-1], re.MULTILINE)
        assert letters == ["A", "B", "C", "D", "E"]  # None of the above + 4 candidates
        assert "A. None of the above" in text
        # choice B.. is the element with id=0.., and that id appears on the page
        for i, choice in enumerate(step["choices"]):
            assert re.match(rf"<\w+ id={i}[ >/]", choice), choice
            assert f" id={i}" in html
        assert len(re.findall(r" id=\d+", html)) == 4
    last = step_prompt(task.payload, len(task.payload["steps"]) - 1, previous_k=2)
    history = last.split("Previous actions:\n")[1].split("\nWhat should")[0].splitlines()
    assert history == [s["repr"] for s in task.payload["steps"][-3:-1]]
    assert "Previous actions:\nNone\n" in step_prompt(task.payload, 0)


def test_teacher_forcing_scores_every_step_and_rewards_step_success_rate():
    env = _env()
    task = next(t for t in env.tasks("train") if len(t.payload["steps"]) >= 5)
    steps, expert = task.payload["steps"], env.expert_actions(task)
    env.reset(task)
    replies = list(expert)
    replies[0] = f"Answer: {_wrong_letter(steps[0])}.\nAction: {steps[0]['op']}"  # wrong element
    replies[1] = "I am not sure what to do here."  # unparseable: a failed step, not an end
    observations = []
    for reply in replies:
        result = env.step(reply)
        observations.append(result.observation)
    assert result.status == Status.COMPLETED and result.done
    n = len(steps)
    assert result.reward == pytest.approx((n - 2) / n)
    assert result.info["step_sr"] == result.reward and result.info["scored"] == n
    # the pages follow the gold trajectory whatever the agent answered
    assert observations[:-1] == [step_prompt(task.payload, k) for k in range(1, n)]


def test_operation_f1_and_element_accuracy_per_step():
    env = _env()
    typed = next(
        s for t in env.tasks("train") for s in t.payload["steps"] if len(s["value"].split()) >= 2
    )
    letter = chr(66 + typed["answer"])
    exact = score_step(gold_reply(typed), typed)
    assert exact["element_correct"] and exact["op_f1"] == 1.0 and exact["success"]
    first = typed["value"].split()[0]
    partial = score_step(f"Answer: {letter}.\nAction: {typed['op']}\nValue: {first}", typed)
    assert partial["element_correct"] and 0 < partial["op_f1"] < 1 and not partial["success"]
    wrong = score_step(gold_reply(typed).replace(f"Answer: {letter}", "Answer: A"), typed)
    assert not wrong["element_correct"] and wrong["op_f1"] == 0.0  # None of the above
    past = score_step(f"Answer: Z.\nAction: {typed['op']}\nValue: {typed['value']}", typed)
    assert not past["element_correct"] and past["parsed"]
    other = _wrong_letter(typed)
    moved = score_step(gold_reply(typed).replace(f"Answer: {letter}", f"Answer: {other}"), typed)
    assert not moved["element_correct"] and moved["op_f1"] == 1.0 and not moved["success"]
    click = next(s for t in env.tasks("train") for s in t.payload["steps"] if s["op"] == "CLICK")
    extra = gold_reply(click) + "\nValue: now"  # a value on a CLICK costs F1, as in Mind2Web
    assert score_step(extra, click)["op_f1"] == pytest.approx(2 / 3)


def test_parse_reply_and_f1():
    assert parse_reply("Thought: go.\nAnswer: C.\nAction: TYPE\nValue: New York") == (
        "C",
        "TYPE New York",
    )
    assert parse_reply("Answer: D.\nAction: CLICK") == ("D", "CLICK")
    assert parse_reply("Answer: None of these") == (None, "")
    assert parse_reply("B. CLICK") == (None, "")
    assert op_f1("TYPE New York", "TYPE New York") == 1.0
    assert op_f1("TYPE New Jersey", "TYPE New York") == pytest.approx(2 / 3)
    assert op_f1("", "CLICK") == 0.0 and op_f1("", "") == 1.0


def test_unparseable_replies_fail_steps_but_the_episode_goes_on():
    env = _env()
    task = env.tasks("test")[0]
    env.reset(task)
    for _ in range(len(task.payload["steps"]) - 1):
        result = env.step("no idea")
        assert not result.done and result.status == Status.RUNNING
        assert result.info["step"]["parsed"] is False and result.observation
    result = env.step("")
    assert result.done and result.status == Status.COMPLETED and result.reward == 0.0


def test_invalid_streak_option_ends_with_agent_invalid_action():
    env = _env(max_invalid_streak=2)
    task = next(t for t in env.tasks("train") if len(t.payload["steps"]) >= 5)
    expert = env.expert_actions(task)
    env.reset(task)
    assert not env.step("garbage").done
    assert not env.step(expert[1]).done  # a parseable reply resets the streak
    assert not env.step("garbage").done
    result = env.step("more garbage")
    n = len(task.payload["steps"])
    assert result.done and result.status == Status.AGENT_INVALID_ACTION
    assert result.reward == pytest.approx(1 / n) and result.info["scored"] == 4


def test_round_limit_gives_task_limit_reached():
    env = _env(max_rounds=2)
    task = env.tasks("train")[0]
    expert = env.expert_actions(task)
    env.reset(task)
    assert not env.step(expert[0]).done
    result = env.step(expert[1])
    assert result.done and result.status == Status.TASK_LIMIT_REACHED
    assert result.reward == pytest.approx(2 / len(task.payload["steps"]))
    assert env.step(expert[2]).status == Status.TASK_ERROR  # the episode is over


def test_step_without_reset_is_a_task_error():
    result = _env().step("Answer: B.\nAction: CLICK")
    assert result.done and result.status == Status.TASK_ERROR


def test_config_rejects_unknown_fields_and_bad_ranges():
    with pytest.raises(ValidationError, match="not_a_field"):
        Mind2WebConfig(not_a_field=1)
    with pytest.raises(ValidationError, match="min_steps"):
        Mind2WebConfig(min_steps=6, max_steps=4)
    with pytest.raises(ValidationError):
        Mind2WebConfig(n_candidates=1)


def test_prompt_layout_few_shot_demo_then_problem():
    env = _env()
    tasks = env.tasks("train") + env.tasks("test")
    messages = env.prompt(tasks[0])
    assert [m["role"] for m in messages] == ["user", "assistant"] * 4 + ["user"]
    assert "loss" not in messages[0] and "You are a helpful assistant" in messages[0]["content"]
    demo = [m for m in messages if m["role"] == "assistant"]
    assert len(demo) == 4 and all(m["loss"] is False for m in demo)
    ops = [parse_reply(m["content"])[1].split()[0] for m in demo[1:]]
    assert ops == ["TYPE", "SELECT", "CLICK"]
    assert Env.problem_of(messages) == messages[-1]["content"] == step_prompt(tasks[0].payload, 0)
    later = [*messages, {"role": "assistant", "content": "x"}]
    assert Env.problem_of(later) == messages[-1]["content"]
    conversations = to_conversations(messages)
    assert [t["loss"] for t in conversations if t["from"] == "gpt"] == [False] * 4
    zero = Mind2WebEnv(SAMPLE.model_copy(update={"n_shots": 0})).prompt(tasks[0])
    assert [m["role"] for m in zero] == ["user", "assistant", "user"]
    assert Env.problem_of(zero) == messages[-1]["content"]
