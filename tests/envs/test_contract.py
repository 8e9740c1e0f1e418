"""Every registered family through the shared contract: registry, prompt layout, TaskIndex,
ExpertPolicy, and the data pipeline's tokenizer."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from agentray.envs.base import Env, FamilyConfig
from agentray.envs.db import DBConfig, DBEnv
from agentray.envs.episode import run_episode, scripted
from agentray.envs.os import OSConfig, OSEnv
from agentray.envs.registry import (
    ENVS,
    HELD_OUT_FAMILIES,
    TaskIndex,
    env_class,
    family_names,
    make_env,
)
from agentray.envs.remote import RemoteEnv
from agentray.policies.expert import ExpertPolicy, expert_reply
from agentray.records import EpisodeResult, Trajectory, env_version_of, to_conversations
from agentray.testing.episodes import policy_reply
from agentray.types import Status

# Every registered family, held-out ones included: small splits (a held-out family builds its
# tasks in its real environment).
CONFIGS = {
    name: {"n_train": 2, "n_test": 2, "seed": 1}
    if name in HELD_OUT_FAMILIES
    else {"n_train": 12, "n_test": 4, "seed": 1}
    for name in ENVS.names()
}


def _family(name: str):
    """``name`` as a parameter, skipped where the family cannot run here (its reason)."""
    reason = env_class(name).unavailable()
    return pytest.param(name, marks=pytest.mark.skipif(reason is not None, reason=reason or ""))


# remote families play against servers: tests/collect/test_remote_envs.py runs this
# contract against real ones
FAMILIES = [_family(name) for name in ENVS.names() if not issubclass(env_class(name), RemoteEnv)]


def test_registry_builds_typed_envs_and_rejects_unknown_fields():
    db = make_env("db", CONFIGS["db"])
    assert isinstance(db, DBEnv) and isinstance(db.config, DBConfig)
    assert db.config.max_rounds == 15 and db.config.n_train == 12
    os_env = make_env("os", CONFIGS["os"])
    assert isinstance(os_env, OSEnv) and isinstance(os_env.config, OSConfig)
    assert os_env.config.max_rounds == 8
    with pytest.raises(ValidationError, match="not_a_field"):
        make_env("db", {"not_a_field": 1})


def test_all_six_held_in_families_are_registered():
    assert set(family_names()) == {"db", "os", "kg", "alfworld", "webshop", "mind2web"}


@pytest.mark.parametrize("family", FAMILIES)
def test_prompt_layout_instruction_demo_problem(family):
    env = make_env(family, CONFIGS[family])
    task = env.tasks("train")[0]
    messages = env.prompt(task)
    assert messages[0]["role"] == "user" and "loss" not in messages[0]
    demo = [m for m in messages if m["role"] == "assistant"]
    assert demo and all(m["loss"] is False for m in demo)
    assert all("loss" not in m for m in messages if m["role"] == "user")
    assert messages[-1]["role"] == "user"
    assert Env.problem_of(messages) == messages[-1]["content"]
    # the same layout once agent turns follow
    assert (
        env.problem_of([*messages, {"role": "assistant", "content": "x"}])
        == messages[-1]["content"]
    )
    conversations = to_conversations(messages)
    assert [t["loss"] for t in conversations if t["from"] == "gpt"] == [False] * len(demo)


def test_db_without_one_shot_is_agentbench_opening():
    env = DBEnv(DBConfig(n_train=2, n_test=1, one_shot=False))
    messages = env.prompt(env.tasks("train")[0])
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1] == {"role": "assistant", "content": "Ok.", "loss": False}


@pytest.mark.parametrize("family", FAMILIES)
def test_task_index_finds_every_task_and_the_expert_replays_it_from_the_text(family):
    """Among all held-in families' tasks (and ``family``'s), each task's conversation leads
    back to the task, and the expert plays it from the text alone (the OpenAI-compatible
    test endpoint's path, where no task travels with the turns)."""
    index = TaskIndex({name: CONFIGS[name] for name in {*family_names(), family}})
    env = make_env(family, CONFIGS[family])
    for task in env.tasks("train") + env.tasks("test"):
        found_env, found = index.lookup(env.prompt(task))
        assert found.id == task.id and found_env.name == family

    def reply(messages: list) -> str:
        return expert_reply(index, messages)

    for task in env.tasks("train")[:2] + env.tasks("test")[:1]:
        result = run_episode(env, task, reply, close=True).result
        assert result.status == Status.COMPLETED and result.reward == 1.0, (task.id, result)


@pytest.mark.parametrize("family", ENVS.names())
def test_family_knows_its_metric_threshold_reference_name_and_splits(family):
    cls = env_class(family)
    assert cls.name == family and issubclass(cls.config_cls, FamilyConfig)
    assert isinstance(cls.metric_label, str) and cls.metric_label
    assert cls.keep_threshold is None or 0 < cls.keep_threshold <= 1
    assert cls.reference_name is None or isinstance(cls.reference_name, str)
    defaults = cls.config_cls()
    assert defaults.n_train >= 0 and defaults.n_test >= 0 and defaults.max_rounds > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_episode_state_machine(family):
    """No step outside an episode (before reset, after its end, after close); an episode of
    replies that are no action ends within max_rounds, unrewarded."""
    env = make_env(family, CONFIGS[family])
    assert env.step("anything").status == Status.TASK_ERROR
    task = env.tasks("train")[0]
    episode = run_episode(env, task, scripted(env.expert_actions(task)))
    assert episode.result.done and episode.result.status == Status.COMPLETED
    assert env.step("anything").status == Status.TASK_ERROR
    env.reset(task)
    env.close()
    assert env.step("anything").status == Status.TASK_ERROR
    episode = run_episode(env, task, lambda messages: "no action here", close=True)
    assert episode.result.done and 1 <= len(episode.step_s) <= env.config.max_rounds
    assert episode.result.status != Status.TASK_ERROR and episode.result.reward == 0.0
    assert env.step("anything").status == Status.TASK_ERROR


@pytest.mark.parametrize("family", FAMILIES)
def test_expert_policy_solves_each_task_it_is_given(family):
    policy = ExpertPolicy()
    env = make_env(family, CONFIGS[family])
    for task in env.tasks("train")[:6] + env.tasks("test")[:3]:
        result = run_episode(env, task, policy_reply(policy, env=env, task=task)).result
        assert result.reward == 1.0 and result.status == "completed", (task.id, result)
    env.close()


@pytest.mark.parametrize("family", FAMILIES)
def test_expert_record_round_trips_through_the_data_pipeline(family, tiny_model_dir):
    """A trajectory record of each family is kept by the filter and tokenized with masks on
    exactly its agent turns (none on the demonstration)."""
    from agentray.process.agentinstruct import classify_trajectory
    from agentray.process.config import ProcessConfig
    from agentray.process.tokenize import IGNORE_INDEX, encode_conversation, load_tokenizer

    env = make_env(family, CONFIGS[family])
    task = env.tasks("test")[0]
    messages, result, _, _ = run_episode(
        env, task, policy_reply(ExpertPolicy(), env=env, task=task), close=True
    )
    episode = EpisodeResult(messages=messages)
    episode.finish(result.reward, result.status)
    version = env_version_of(family, env.version)
    record = Trajectory.from_episode(task, episode, version, {"name": "expert"})
    kept = classify_trajectory(record, ProcessConfig())
    assert kept["reject_reason"] == ""
    conversations = json.loads(kept["conversations"])
    assert conversations == to_conversations(messages)

    tokenizer = load_tokenizer(tiny_model_dir)
    encoded = encode_conversation(tokenizer, conversations, max_seq_len=100_000)
    agent_turns = [t for t in conversations if t["from"] == "gpt" and t["loss"]]
    labeled = tokenizer.decode([t for t in encoded["labels"] if t != IGNORE_INDEX])
    assert labeled.count(tokenizer.eos_token) == len(agent_turns)
