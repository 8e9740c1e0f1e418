"""The Trajectory record: its parquet schema comes from the model, rows round-trip through
the sink, runs written before ``response_token_ids`` was dropped or ``attempt`` was added
still load, and both
producers (the engine and ``expert_trajectory``) agree on ``env_version``."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agentray.collect.engine import make_env_version
from agentray.collect.sink import ParquetSink, finished_ids, read_trajectories
from agentray.envs.play import expert_trajectory
from agentray.envs.registry import make_env
from agentray.records import TRAJECTORY_SCHEMA, EpisodeResult, Trajectory, arrow_schema
from agentray.types import Status, TaskSpec

# the columns every run so far has on disk (less response_token_ids, now dropped)
EVERY_RUN = pa.schema(
    [
        ("id", pa.string()),
        ("task", pa.string()),
        ("split", pa.string()),
        ("env_version", pa.string()),
        (
            "conversations",
            pa.list_(
                pa.struct([("from", pa.string()), ("loss", pa.bool_()), ("value", pa.string())])
            ),
        ),
        ("reward", pa.float64()),
        ("status", pa.string()),
        ("turns", pa.int32()),
        ("policy", pa.string()),
        ("seed", pa.int64()),
        ("timings", pa.string()),
        ("error", pa.string()),
    ]
)
ON_DISK = EVERY_RUN.append(pa.field("attempt", pa.int64()))  # runs since attempts are counted
TURNS = [
    {"from": "human", "loss": None, "value": "instructions"},
    {"from": "gpt", "loss": False, "value": "OK."},
    {"from": "human", "loss": None, "value": "the task"},
    {"from": "gpt", "loss": True, "value": "Action: Answer\nFinal Answer: [3]"},
]


def _record(task_id: str = "db_0", **changes) -> Trajectory:
    fields = {
        "id": task_id,
        "task": "db",
        "split": "train",
        "env_version": "db-v1",
        "conversations": TURNS,
        "reward": 1.0,
        "status": Status.COMPLETED,
        "turns": 1,
        "policy": {"name": "expert", "backend": "expert", "params": {"temperature": 0.0}},
        "seed": 7,
        "timings": {"wall_s": 0.25, "attempts": 1},
        "error": None,
    }
    return Trajectory(**(fields | changes))


def test_the_parquet_schema_is_derived_from_the_model_and_is_what_the_sink_writes(tmp_path):
    assert TRAJECTORY_SCHEMA == arrow_schema(Trajectory) == ON_DISK
    sink = ParquetSink(tmp_path)
    sink.add(_record())
    sink.flush()
    [shard] = tmp_path.glob("*.parquet")
    assert pq.read_schema(shard).remove_metadata() == TRAJECTORY_SCHEMA


def test_a_record_round_trips_through_the_sink(tmp_path):
    records = [_record("db_0"), _record("db_1", reward=0.0, status="task_error", error="boom")]
    sink = ParquetSink(tmp_path)
    for record in records:
        assert sink.add(record)
    sink.flush()
    assert read_trajectories(tmp_path) == records
    row = pq.read_table(tmp_path).to_pylist()[0]
    assert isinstance(row["policy"], str) and isinstance(row["timings"], str)  # JSON text
    assert Trajectory.from_row(row) == records[0]
    with pytest.raises(TypeError, match="Trajectory"):
        sink.add(records[0].to_row())  # rows are built as records, not by hand


def test_a_run_written_with_response_token_ids_still_loads(tmp_path):
    old = EVERY_RUN.append(pa.field("response_token_ids", pa.list_(pa.list_(pa.int32()))))
    row = _record().to_row() | {"env_version": "1", "response_token_ids": [[1, 2, 3]]}
    pq.write_table(pa.Table.from_pylist([row], schema=old), tmp_path / "part-old.parquet")
    [loaded] = read_trajectories(tmp_path)
    assert loaded == _record(env_version="1")
    assert finished_ids(tmp_path) == {"db_0"}
    sink = ParquetSink(tmp_path)  # a rerun appends new shards beside it
    assert not sink.add(_record()) and sink.add(_record("db_1"))
    sink.flush()
    assert sorted(r.id for r in read_trajectories(tmp_path)) == ["db_0", "db_1"]


def test_a_run_written_before_attempts_were_counted_loads_as_first_attempts(tmp_path):
    rows = [_record("db_0").to_row(), _record("db_1", status="task_error").to_row()]
    table = pa.Table.from_pylist([{k: r[k] for k in EVERY_RUN.names} for r in rows], EVERY_RUN)
    pq.write_table(table, tmp_path / "part-old.parquet")
    assert read_trajectories(tmp_path) == [_record("db_0"), _record("db_1", status="task_error")]
    assert all(r.attempt == 1 for r in read_trajectories(tmp_path))
    sink = ParquetSink(tmp_path, max_attempts=2)  # the old error is retried as attempt 2
    assert sink.next_attempt("db_0") is None and sink.next_attempt("db_1") == 2
    # Ray Data fills a column some shards lack with nulls
    assert Trajectory.from_row(rows[0] | {"attempt": None}).attempt == 1


def test_rows_as_ray_data_hands_them_over_convert():
    row = _record().to_row() | {"conversations": np.array(TURNS, dtype=object), "extra": 1}
    assert Trajectory.from_row(row) == _record()


def test_both_producers_agree_on_env_version():
    env = make_env("db", {"n_train": 2, "n_test": 1})
    task = env.tasks("train")[0]
    record = expert_trajectory(env, task)
    env.close()
    assert record.env_version == make_env_version("db") == "db-v1"
    assert (record.status, record.reward) == (Status.COMPLETED, 1.0)
    assert record.turns == sum(t["loss"] is True for t in record.conversations) >= 1
    assert record.policy["backend"] == "expert"


def test_an_episode_result_becomes_a_record():
    episode = EpisodeResult(
        messages=[
            {"role": "system", "content": "rules"},
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "demo", "loss": False},
            {"role": "user", "content": "task"},
            {"role": "assistant", "content": "answer"},
        ]
    )
    episode.finish(0.5, "completed")
    assert episode.turns == 1 and episode.status is Status.COMPLETED
    episode = pickle.loads(pickle.dumps(episode))  # as it crosses Ray
    task = TaskSpec(id="db_3", family="db", split="test", seed=3)
    record = Trajectory.from_episode(task, episode, "db-v1", {"name": "x"})
    assert (record.id, record.task, record.split, record.seed) == ("db_3", "db", "test", 3)
    assert record.turns == 1 and record.reward == 0.5 and record.timings == episode.timings
    assert [t["loss"] for t in record.conversations] == [None, False, None, True]
    assert record.conversations[0]["value"] == "rules\n\nq"
    failed = EpisodeResult.failed("no live actors")
    assert (failed.status, failed.error, failed.messages) == (
        Status.TASK_ERROR,
        "no live actors",
        [],
    )
