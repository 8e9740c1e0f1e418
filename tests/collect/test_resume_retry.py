"""Resume retries errors: a rerun over the same folder keeps completed episodes and runs
again those that ended in task_error, up to ``max_attempts`` runs per id (or keeps them
frozen), while every reader sees one row per id; an unreadable shard is named in one line.

The sink's rules on a local folder and in an S3 bucket; then real runs on Ray against the
expert endpoint over HTTP, with an outage it recovers from."""

from __future__ import annotations

from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from agentray import storage
from agentray.cli import app
from agentray.collect import CorruptShardError
from agentray.collect.config import CollectConfig, RolloutConfig
from agentray.collect.run import run_collect
from agentray.collect.sink import ParquetSink, finished_ids, id_states, read_trajectories
from agentray.failures import StageFailed
from agentray.policies.registry import OpenAIConfig
from agentray.records import TRAJECTORY_SCHEMA, Trajectory
from agentray.testing.expert_endpoint import ExpertEndpoint

TURNS = [
    {"from": "human", "loss": None, "value": "the task"},
    {"from": "gpt", "loss": True, "value": "Action: Answer\nFinal Answer: [3]"},
]


def _record(task_id: str, status: str = "completed", attempt: int = 1, **changes) -> Trajectory:
    ok = status == "completed"
    fields = {
        "id": task_id,
        "task": "db",
        "split": "train",
        "env_version": "db-v1",
        "conversations": TURNS if ok else [],
        "reward": 1.0 if ok else 0.0,
        "status": status,
        "turns": 1 if ok else 0,
        "seed": 0,
        "error": None if ok else "injected 503",
        "attempt": attempt,
    }
    return Trajectory(**(fields | changes))


def _kept(location: str) -> list[tuple[str, str, int]]:
    return [(r.id, r.status.value, r.attempt) for r in read_trajectories(location)]


def test_a_retry_supersedes_its_error_and_every_reader_keeps_one_row_per_id(location, row_ids):
    first = ParquetSink(location, flush_every=1, max_attempts=3)
    for record in (_record("db_0"), _record("db_1", "task_error"), _record("db_2", "task_error")):
        assert first.add(record)
    assert first.next_attempt("db_1") is None  # one record per id and run

    rerun = ParquetSink(location, flush_every=1, max_attempts=3)
    assert [rerun.next_attempt(i) for i in ("db_0", "db_1", "db_2", "db_3")] == [None, 2, 2, 1]
    assert not rerun.add(_record("db_0", attempt=2))  # completed: kept exactly once
    assert not rerun.add(_record("db_1"))  # not the attempt the sink asked for
    assert rerun.add(_record("db_1", attempt=2))
    assert rerun.add(_record("db_2", "task_error", attempt=2))
    assert not rerun.add(_record("db_2", attempt=2))  # once per run, error or not

    # the folder is append-only: the errors are still there, superseded
    assert row_ids(location) == Counter({"db_0": 1, "db_1": 2, "db_2": 2})
    assert _kept(location) == [
        ("db_0", "completed", 1),
        ("db_1", "completed", 2),
        ("db_2", "task_error", 2),
    ]
    assert id_states(location) == {
        "db_0": ("completed", 1),
        "db_1": ("completed", 2),
        "db_2": ("task_error", 2),
    }
    assert finished_ids(location) == {"db_0", "db_1", "db_2"}  # max_attempts 1: all frozen
    assert finished_ids(location, max_attempts=3) == {"db_0", "db_1"}
    assert finished_ids(location, max_attempts=2) == {"db_0", "db_1", "db_2"}

    # the bound: db_2 has had 2 of 2 attempts; frozen errors are never run again
    assert ParquetSink(location, max_attempts=2).next_attempt("db_2") is None
    assert ParquetSink(location).next_attempt("db_2") is None
    assert ParquetSink(location, max_attempts=3).next_attempt("db_2") == 3


def _write_shard(location: str, name: str, records: list[Trajectory]) -> str:
    """A shard as another driver over the same folder would write it."""
    data = pa.BufferOutputStream()
    table = pa.Table.from_pylist([r.to_row() for r in records], schema=TRAJECTORY_SCHEMA)
    pq.write_table(table, data)
    return storage.write_bytes(storage.join(location, name), data.getvalue().to_pybytes())


def test_a_late_row_never_replaces_a_completed_one(location):
    """Two drivers retried db_0 at once and a third wrote a stale error after them: the
    first completed row stands for db_0; db_1, only errors, is its latest attempt. The
    process stage's reader drops exactly the other rows."""
    from agentray.process.run import _superseded_rows

    shards = [
        ("part-1.parquet", [_record("db_0", "task_error"), _record("db_1", "task_error")]),
        ("part-2.parquet", [_record("db_0", attempt=2)]),
        ("part-3.parquet", [_record("db_0", attempt=2, reward=0.5)]),
        ("part-4.parquet", [_record("db_0", "task_error", 3), _record("db_1", "task_error", 2)]),
    ]
    rows = []
    for name, records in shards:
        path = _write_shard(location, name, records)
        rows += [r.to_row() | {"path": path} for r in records]
    kept = [(r.id, r.status.value, r.attempt, r.reward) for r in read_trajectories(location)]
    assert kept == [("db_0", "completed", 2, 1.0), ("db_1", "task_error", 2, 0.0)]
    superseded = _superseded_rows([{k: r[k] for k in ("path", "id", "status")} for r in rows])
    process_kept = [r for r in rows if (r["path"], r["id"]) not in superseded]
    assert [(r["id"], r["status"], r["attempt"], r["reward"]) for r in process_kept] == kept


def _truncate_one_shard(location: str) -> str:
    sink = ParquetSink(location, flush_every=1)
    sink.add(_record("db_0"))
    sink.add(_record("db_1"))
    shard = storage.list_files(location, ".parquet")[1]
    data = storage.read_bytes(shard)
    storage.write_bytes(shard, data[: len(data) // 2])
    return shard


def test_an_unreadable_shard_is_named_in_one_line(location):
    shard = _truncate_one_shard(location)
    for read in (finished_ids, read_trajectories, id_states, ParquetSink):
        with pytest.raises(CorruptShardError) as caught:
            read(location)
        assert caught.value.location == shard
        message = str(caught.value)
        assert message.startswith(f"unreadable trajectory shard {shard}: ")
        assert "\n" not in message and "magic bytes" in caught.value.reason


def test_a_parquet_file_that_is_not_a_trajectory_shard_is_named(tmp_path):
    pq.write_table(pa.table({"x": [1]}), tmp_path / "part-alien.parquet")
    with pytest.raises(CorruptShardError, match="part-alien.parquet: no .* column"):
        finished_ids(str(tmp_path))


def test_collect_names_the_unreadable_shard_and_exits_1(tmp_path):
    """Before any work (Ray is not started): one line on stderr, no traceback."""
    shard = _truncate_one_shard(str(tmp_path / "run" / "collect" / "trajectories"))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run")}))
    result = CliRunner().invoke(app, ["collect", str(config)])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and shard in lines[0] and "Traceback" not in result.output, lines


# -- real runs: Ray, the openai policy, the expert endpoint over HTTP --------------------

FAMILY = {"db": {"n_train": 11, "n_test": 1}}


def _collect(base_url: str, max_tasks: int, **rollout) -> CollectConfig:
    return CollectConfig(
        families=["db"],
        max_tasks_per_family=max_tasks,
        # no retries inside a run: a 503 ends its episode as task_error; no preflight
        # request, so the endpoint's counts are the episodes' alone
        policy=OpenAIConfig(model="expert", base_url=base_url, max_retries=0, preflight=False),
        rollout=RolloutConfig(
            max_in_flight=8,
            num_env_pools=1,
            envs_per_pool=8,
            flush_every=3,
            metrics=False,
            **rollout,
        ),
    )


def _outage(ep: ExpertEndpoint, after: int, requests: int) -> None:
    import requests as http

    response = http.post(
        f"{ep.url}/faults", json={"outage_after": after, "outage_requests": requests}, timeout=10
    )
    response.raise_for_status()


def _statuses(location: str) -> dict[str, tuple[str, int]]:
    return {r.id: (r.status.value, r.attempt) for r in read_trajectories(location)}


@pytest.mark.slow
def test_a_rerun_after_the_endpoint_recovers_completes_every_id_once(ray_local, location, row_ids):
    """8 tasks; the endpoint answers 2 requests, fails the next 2 with 503, then recovers:
    exactly 2 episodes end in task_error (each failed request ends its episode). A frozen
    rerun leaves them; a retrying one completes them as attempt 2, once each; the process
    stage's reader sees one row per id too."""
    from agentray.process.run import _one_row_per_id

    out = storage.join(location, "collect", "trajectories")
    with ExpertEndpoint(
        families=["db"], family_configs=FAMILY, outage_after=2, outage_requests=2
    ) as ep:
        first = run_collect(_collect(ep.base_url, 8), location, progress=False, envs=FAMILY)
        assert first["families"]["db"]["statuses"] == {"completed": 6, "task_error": 2}
        failed = {i for i, (status, _) in _statuses(out).items() if status == "task_error"}
        assert len(failed) == 2 and all("503" in r.error for r in read_trajectories(out) if r.error)

        requests_before = ep.stats()["requests"]
        frozen = run_collect(
            _collect(ep.base_url, 8, retry_errors=False), location, progress=False, envs=FAMILY
        )
        assert (frozen["episodes"], frozen["skipped_already_done"]) == (0, 8)
        assert ep.stats()["requests"] == requests_before  # nothing was asked again
        assert {i for i, (s, _) in _statuses(out).items() if s == "task_error"} == failed

        again = run_collect(_collect(ep.base_url, 8), location, progress=False, envs=FAMILY)
    assert (again["episodes"], again["retried_errors"], again["skipped_already_done"]) == (2, 2, 6)
    assert again["families"]["db"]["statuses"] == {"completed": 2}
    states = _statuses(out)
    assert (
        states == {i: ("completed", 2 if i in failed else 1) for i in states} and len(states) == 8
    )
    # on disk: the 2 errors are still there beside their retries, nothing else is doubled
    assert row_ids(out) == Counter({i: 2 if i in failed else 1 for i in states})
    import ray.data

    assert ray.data.read_parquet(out).count() == 10  # what a reader without the rule sees
    rows = _one_row_per_id(out)
    assert sorted((r["id"], r["status"]) for r in rows) == sorted((i, "completed") for i in states)


@pytest.mark.slow
def test_an_error_on_its_last_attempt_is_not_retried(ray_local, tmp_path):
    """max_attempts 2: 3 tasks fail twice (the endpoint is down), then, the endpoint back, a
    rerun does not ask for them again; raising max_attempts runs them a third time."""
    run_dir = str(tmp_path / "run")
    out = storage.join(run_dir, "collect", "trajectories")
    with ExpertEndpoint(families=["db"], family_configs=FAMILY, outage_requests=10_000) as ep:
        for attempt in (1, 2):
            with pytest.raises(StageFailed) as every_episode_failed:  # loud, outputs written
                run_collect(
                    _collect(ep.base_url, 3, max_attempts=2), run_dir, progress=False, envs=FAMILY
                )
            summary = every_episode_failed.value.result
            assert summary["families"]["db"]["statuses"] == {"task_error": 3}
            assert set(_statuses(out).values()) == {("task_error", attempt)}
        _outage(ep, 0, 0)  # recovered
        requests_before = ep.stats()["requests"]
        at_max = run_collect(
            _collect(ep.base_url, 3, max_attempts=2), run_dir, progress=False, envs=FAMILY
        )
        assert (at_max["episodes"], at_max["skipped_already_done"]) == (0, 3)
        assert ep.stats()["requests"] == requests_before
        assert set(_statuses(out).values()) == {("task_error", 2)}

        third = run_collect(
            _collect(ep.base_url, 3, max_attempts=3), run_dir, progress=False, envs=FAMILY
        )
    assert third["retried_errors"] == 3
    assert set(_statuses(out).values()) == {("completed", 3)}
