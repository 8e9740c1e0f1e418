"""The rollout engine on a real local Ray cluster, with the expert teacher."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from agentray import storage
from agentray.collect.config import CollectConfig, RolloutConfig
from agentray.collect.engine import RolloutEngine, load_tasks, merge_stats
from agentray.collect.run import run_collect
from agentray.collect.sink import ParquetSink, finished_ids, read_trajectories
from agentray.policies.registry import ExpertConfig, HFConfig, OpenAIConfig, PolicyConfig
from agentray.records import TRAJECTORY_SCHEMA, Trajectory


def test_policy_stats_of_several_actors_are_summed():
    merged = merge_stats(
        [
            {"requests": 3, "cost_usd": 0.5, "model": "gpt-4", "by_status": {"429": 1}},
            {"requests": 4, "cost_usd": 0.25, "model": "gpt-4", "by_status": {"429": 2, "500": 1}},
        ]
    )
    assert merged == {
        "requests": 7,
        "cost_usd": 0.75,
        "model": "gpt-4",
        "by_status": {"429": 3, "500": 1},
    }


def _record(task_id: str) -> Trajectory:
    return Trajectory(
        id=task_id,
        task="db",
        split="train",
        env_version="db-v1",
        conversations=[{"from": "human", "loss": None, "value": "q"}],
        reward=1.0,
        status="completed",
        turns=1,
        seed=0,
    )


def test_sink_keeps_one_record_per_id_and_flushes_by_age(location):
    sink = ParquetSink(location, flush_every=100, flush_interval_s=0.2)
    assert sink.add(_record("db_0")) and not sink.add(_record("db_0"))
    assert sink.shards_written == 0 and finished_ids(location) == set()
    time.sleep(0.25)
    sink.add(_record("db_1"))  # the oldest buffered record is old enough: a shard
    assert sink.shards_written == 1 and finished_ids(location) == {"db_0", "db_1"}
    again = ParquetSink(location)  # a rerun sees both as done
    assert not again.add(_record("db_1")) and again.add(_record("db_2"))


def test_shards_are_whole_objects_in_write_order_and_readers_keep_one_row_per_id(
    location, all_files, row_ids
):
    sink = ParquetSink(location, flush_every=1)
    for task_id in ("db_0", "db_1"):
        sink.add(_record(task_id))
    first, second = storage.list_files(location, ".parquet")  # sorted names: write order
    assert [row_ids(first), row_ids(second)] == [Counter(["db_0"]), Counter(["db_1"])]
    # nothing else under the folder (no temporary object): what Ray Data reads as parquet
    assert all_files(location) == [storage.name(first), storage.name(second)]
    # a shard that repeats an id (two drivers at once): the first shard in sorted order wins
    late = _record("db_0").model_copy(update={"reward": 0.0})
    rows = [late.to_row(), _record("db_2").to_row()]
    data = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=TRAJECTORY_SCHEMA), data)
    storage.write_bytes(storage.join(location, "part-z.parquet"), data.getvalue().to_pybytes())
    records = read_trajectories(location)
    assert [(r.id, r.reward) for r in records] == [("db_0", 1.0), ("db_1", 1.0), ("db_2", 1.0)]
    assert finished_ids(location) == {"db_0", "db_1", "db_2"}


SMALL = {"db": {"n_train": 6, "n_test": 3}, "os": {"n_train": 6, "n_test": 3}}


def _collect_cfg(**rollout) -> CollectConfig:
    return CollectConfig(
        families=["db", "os"],
        policy=ExpertConfig(),
        rollout=RolloutConfig(
            max_in_flight=8, num_env_pools=2, envs_per_pool=8, flush_every=4, **rollout
        ),
    )


@pytest.mark.slow
def test_expert_collection_writes_agentinstruct_records_once(
    ray_local, location, tmp_path, monkeypatch, all_files, row_ids
):
    monkeypatch.chdir(tmp_path)  # a URI taken for a relative path would land here
    summary = run_collect(_collect_cfg(), location, progress=False, envs=SMALL)
    out = storage.join(location, "collect", "trajectories")
    rows = read_trajectories(out)
    assert row_ids(out) == Counter({r.id: 1 for r in rows}) and len(rows) == 12
    assert all(r.reward == 1.0 and r.status == "completed" for r in rows), [
        (r.id, r.status, r.error) for r in rows if r.reward != 1.0
    ]
    assert summary["families"]["db"]["success_rate"] == 1.0
    for row in rows:
        assert row.env_version == f"{row.task}-v1"
        turns = row.conversations
        assert {t["from"] for t in turns} == {"human", "gpt"}
        assert all(t["loss"] is None for t in turns if t["from"] == "human")
        assert any(t["loss"] is False for t in turns)  # the 1-shot demonstration
        assert turns[-1]["from"] == "gpt" and turns[-1]["loss"] is True
        assert row.turns == sum(t["loss"] is True for t in turns)
        assert row.policy["backend"] == "expert"
        assert {"wall_s", "env_s", "policy_s", "attempts"} <= set(row.timings)
    manifest = storage.read_json(storage.join(location, "collect", "manifest.json"))
    assert manifest["counts"]["written_total"] == 12
    assert manifest["outputs"]["trajectories"] == out

    # a rerun over the same run dir resumes: nothing is redone or doubled
    again = run_collect(_collect_cfg(), location, progress=False, envs=SMALL)
    assert again["skipped_already_done"] == 12 and again["families"] == {}
    assert len(read_trajectories(out)) == 12
    # every artifact is in the run's location (the bucket), shards and manifest only
    files = all_files(location)
    shards = [f for f in files if f != "collect/manifest.json"]
    assert len(shards) == len(files) - 1 >= 3, files  # 12 records, flush_every 4
    assert all(re.fullmatch(r"collect/trajectories/part-[0-9a-f-]+\.parquet", f) for f in shards)
    assert not [p for p in tmp_path.rglob("*") if "s3" in p.name]
    # the folder is what Ray Data reads, on a local disk and in a bucket alike
    import ray.data

    assert ray.data.read_parquet(out).count() == 12


@pytest.mark.slow
def test_untrained_model_gets_invalid_action_status(ray_local, tmp_path, tiny_model_dir):
    """A random tiny model answers nonsense: agent_invalid_action records, not a crash."""
    policy = HFConfig(model=tiny_model_dir, params={"max_new_tokens": 12})
    records, summary = _run_engine(policy, tmp_path)
    assert {r.status for r in records} == {"agent_invalid_action"}
    assert all(r.reward == 0.0 and r.turns == 1 for r in records)
    tokens = summary["families"]["db"]["tokens"]  # counted from the model's token ids
    assert 0 < tokens["completion_tokens"] <= 12 * len(records) and tokens["prompt_tokens"] > 0


@pytest.mark.slow
def test_unreachable_teacher_ends_every_episode_with_task_error(ray_local, tmp_path):
    policy = OpenAIConfig(
        model="gpt-4",
        base_url="http://127.0.0.1:9/v1",
        max_retries=0,
        timeout_s=2,
    )
    records, _ = _run_engine(policy, tmp_path)
    assert {r.status for r in records} == {"task_error"}
    assert all(r.error for r in records)


@pytest.mark.slow
def test_tasks_are_taken_lazily_and_spread_over_actors(ray_local, tmp_path):
    """Backpressure: a generator of tasks is consumed at most the in-flight limit ahead of
    the finished episodes; new episodes go to the least-loaded EnvPool and PolicyActor, and
    no pool hosts more than envs_per_pool at once."""
    family = {"db": {"n_train": 80, "n_test": 2}}
    cfg = RolloutConfig(  # envs_per_pool caps the 8 in flight at 2 x 3
        max_in_flight=8, num_env_pools=2, envs_per_pool=3, num_policy_actors=2, flush_every=16
    )
    finished = ("ray_agentray_episodes_finished_total", 'family="db"', 'status="completed"')
    policy_turns = ("ray_agentray_step_latency_s_count", 'kind="policy"')
    # what earlier tests of the session added, once all of it has been exported
    before = {metric: _settled_metric(ray_local, *metric) for metric in (finished, policy_turns)}
    engine = RolloutEngine(cfg, ExpertConfig(), family)
    sink = ParquetSink(tmp_path / "t", flush_every=16)
    ahead: list[int] = []

    def tasks():
        for taken, task in enumerate(load_tasks(["db"], "train", family), start=1):
            ahead.append(taken - len(sink.written))  # taken but not finished, this one included
            yield task

    try:
        summary = asyncio.run(engine.run(tasks(), sink, progress=False))
    finally:
        engine.shutdown()
    assert len(sink.written) == 80 and summary["families"]["db"]["success_rate"] == 1.0
    assert max(ahead) == 6
    turns = [actor["turns"] for actor in summary["policy_actors"]]
    assert sum(turns) == 160 and min(turns) >= 160 // 4, turns
    assert all(actor["cpu_s"] > 0 for actor in summary["policy_actors"])  # process CPU
    episodes = [pool["episodes"] for pool in summary["env_pools"]]
    assert sum(episodes) == 80 and min(episodes) >= 80 // 4, episodes
    assert max(pool["peak_active"] for pool in summary["env_pools"]) <= 3
    assert summary["actor_replacements"] == {"env_pool": 0, "policy": 0}

    # the same counts reach Ray's metrics (the Prometheus endpoint the dashboard reads):
    # this run added exactly 80 finished episodes and 160 policy turns
    for metric, added in ((finished, 80), (policy_turns, 160)):
        total = _settled_metric(ray_local, *metric, at_least=before[metric] + added)
        assert total - before[metric] == added, (metric, before[metric], total)


# Ray exports metrics every few seconds (10 by default): a total unchanged for longer than
# that has everything recorded before the read.
QUIET_S, SETTLE_TIMEOUT_S = 15.0, 120.0


def _settled_metric(ray, name: str, *labels: str, at_least: float = 0.0) -> float:
    """The sum of the samples of ``name`` with ``labels`` on this node's metrics endpoint,
    once it is at least ``at_least`` and has stayed the same for ``QUIET_S``."""
    node_id = ray.get_runtime_context().get_node_id()
    port = next(n["MetricsExportPort"] for n in ray.nodes() if n["NodeID"] == node_id)
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    total, since = None, time.monotonic()
    while time.monotonic() < deadline:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        now = sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + "{") and all(label in line for label in labels)
        )
        if now != total:
            total, since = now, time.monotonic()
        elif total >= at_least and time.monotonic() - since >= QUIET_S:
            return total
        time.sleep(1.0)
    raise AssertionError(f"{name}{{{', '.join(labels)}}} = {total}: not settled at >= {at_least}")


def _run_engine(policy: PolicyConfig, tmp_path) -> tuple[list[Trajectory], dict]:
    cfg = _collect_cfg()
    engine = RolloutEngine(cfg.rollout, policy, SMALL)
    sink = ParquetSink(tmp_path / "t")
    tasks = load_tasks(["db"], "test", SMALL)
    try:
        summary = asyncio.run(engine.run(tasks, sink, progress=False))
    finally:
        engine.shutdown()
    records = read_trajectories(tmp_path / "t")
    assert sorted(r.id for r in records) == sorted(t.id for t in tasks)
    return records, summary
