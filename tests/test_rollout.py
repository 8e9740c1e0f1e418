"""The rollout engine on a real local Ray cluster, with the expert teacher."""

from __future__ import annotations

import asyncio
import json

import pytest

from agentray.policies.registry import PolicyConfig
from agentray.rollout.collect import run_collect
from agentray.rollout.config import CollectConfig, RolloutConfig
from agentray.rollout.engine import RolloutEngine, load_tasks
from agentray.rollout.sink import ParquetSink, read_trajectories

pytestmark = pytest.mark.slow

SMALL = {"db": {"n_train": 6, "n_test": 3}, "os": {"n_train": 6, "n_test": 3}}


def _collect_cfg(**rollout) -> CollectConfig:
    return CollectConfig(
        families=["db", "os"],
        family_configs=SMALL,
        policy=PolicyConfig(backend="expert"),
        rollout=RolloutConfig(
            max_in_flight=8, num_env_pools=2, envs_per_pool=8, flush_every=4, **rollout
        ),
    )


def test_expert_collection_writes_agentinstruct_records_once(ray_local, tmp_path):
    summary = run_collect(_collect_cfg(), tmp_path, progress=False)
    rows = read_trajectories(tmp_path / "collect" / "trajectories")
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == 12
    assert all(r["reward"] == 1.0 and r["status"] == "completed" for r in rows), [
        (r["id"], r["status"], r["error"]) for r in rows if r["reward"] != 1.0
    ]
    assert summary["families"]["db"]["success_rate"] == 1.0
    for row in rows:
        turns = row["conversations"]
        assert {t["from"] for t in turns} == {"human", "gpt"}
        assert all(t["loss"] is None for t in turns if t["from"] == "human")
        assert any(t["loss"] is False for t in turns)  # the 1-shot demonstration
        assert turns[-1]["from"] == "gpt" and turns[-1]["loss"] is True
        assert row["turns"] == sum(t["loss"] is True for t in turns)
        assert json.loads(row["policy"])["backend"] == "expert"
    manifest = json.loads((tmp_path / "collect" / "manifest.json").read_text())
    assert manifest["counts"]["written_total"] == 12

    # a rerun over the same run dir resumes: nothing is redone or doubled
    again = run_collect(_collect_cfg(), tmp_path, progress=False)
    assert again["skipped_already_done"] == 12 and again["families"] == {}
    assert len(read_trajectories(tmp_path / "collect" / "trajectories")) == 12


def test_untrained_model_gets_invalid_action_status(ray_local, tmp_path, tiny_model_dir):
    """A random tiny model answers nonsense: agent_invalid_action records, not a crash."""
    policy = PolicyConfig(backend="hf", model=tiny_model_dir, params={"max_new_tokens": 12})
    records = _run_engine(policy, tmp_path)
    assert {r["status"] for r in records} == {"agent_invalid_action"}
    assert all(r["reward"] == 0.0 and r["turns"] == 1 for r in records)
    assert all(len(r["response_token_ids"][0]) > 0 for r in records)  # token ids kept


def test_unreachable_teacher_ends_every_episode_with_task_error(ray_local, tmp_path):
    policy = PolicyConfig(
        backend="openai",
        model="gpt-4",
        base_url="http://127.0.0.1:9/v1",
        max_retries=0,
        timeout_s=2,
    )
    records = _run_engine(policy, tmp_path)
    assert {r["status"] for r in records} == {"task_error"}
    assert all(r["error"] for r in records)


def _run_engine(policy: PolicyConfig, tmp_path) -> list[dict]:
    cfg = _collect_cfg()
    engine = RolloutEngine(cfg.rollout, policy, SMALL)
    sink = ParquetSink(tmp_path / "t")
    tasks = load_tasks(["db"], "test", SMALL)
    try:
        asyncio.run(engine.run(tasks, sink, progress=False))
    finally:
        engine.shutdown()
    records = read_trajectories(tmp_path / "t")
    assert sorted(r["id"] for r in records) == sorted(t.id for t in tasks)
    return records
