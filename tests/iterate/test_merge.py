"""A round's merge: reward filter as process, dedup by task and conversation, keep_per_task."""

from __future__ import annotations

from pathlib import Path

from iterate_records import db_record, trajectory_folder

from agentray import storage
from agentray.collect import ParquetSink, read_trajectories
from agentray.config import IterateConfig
from agentray.iterate.merge import merge_round
from agentray.process import ProcessConfig


def _sources(tmp_path: Path) -> tuple[list[dict], list[dict]]:
    teacher = trajectory_folder(
        tmp_path / "teacher",
        [db_record("db_0", "Answer: 3", 1.0, None), db_record("db_1", "Answer: 5", 1.0, None)],
    )
    sample0 = trajectory_folder(
        tmp_path / "s0",
        [
            db_record("db_0", "Answer: 3", 1.0, 0),  # the teacher's very conversation
            db_record("db_1", "Answer: 4", 0.0, 0),  # failed: filtered out
            db_record("db_2", "Answer: 7", 1.0, 0),
        ],
    )
    sample1 = trajectory_folder(
        tmp_path / "s1",
        [
            db_record("db_0", "Answer: 3 rows", 1.0, 0),
            db_record("db_1", "Answer: 5 rows", 1.0, 0),
            db_record("db_2", "Answer: 7 rows", 1.0, 0),
        ],
    )
    return [teacher], [sample0, sample1]


def test_merge_filters_dedups_and_keeps_k_per_task_earliest_first(tmp_path):
    sources, explored = _sources(tmp_path)
    process = ProcessConfig(check_actions=False)
    out = str(tmp_path / "merge")
    counts = merge_round(sources, explored, IterateConfig(keep_per_task=1), process, out)
    kept = {r.id: r for r in read_trajectories(storage.join(out, "trajectories"))}
    assert sorted(kept) == ["db_0", "db_1", "db_2"]
    assert kept["db_0"].policy["backend"] == "expert"  # earliest: the teacher's first
    assert kept["db_2"].policy["round"] == 0
    assert counts["rejected_by_filter"] == 1
    assert counts["duplicate_trajectory"] == 1
    assert counts["over_keep_per_task"] == 3
    assert counts["kept_by_source"] == {"teacher": 2, "round-0": 1}
    assert counts["exploration"]["db"] == {"episodes": 6, "passed": 5, "success_rate": 0.833}
    manifest = storage.read_json(storage.join(out, "manifest.json"))
    assert [s["path"] for s in manifest["inputs"]["trajectories"]] == [
        s["path"] for s in sources + explored
    ]
    assert manifest["inputs"]["trajectories"][1]["kept"] == 1


def test_merge_keeps_two_per_task_latest_first_under_distinct_ids(tmp_path):
    sources, explored = _sources(tmp_path)
    out = str(tmp_path / "merge")
    it = IterateConfig(keep_per_task=2, prefer="latest")
    merge_round(sources, explored, it, ProcessConfig(check_actions=False), out)
    kept = {r.id: r for r in read_trajectories(storage.join(out, "trajectories"))}
    assert sorted(kept) == ["db_0", "db_0#2", "db_1", "db_1#2", "db_2", "db_2#2"]
    # latest first: the explored successes, then the teacher's (db_0's: a duplicate of s0's)
    assert kept["db_0"].policy.get("round") == 0 and kept["db_0#2"].policy.get("round") == 0
    assert kept["db_1"].policy.get("round") == 0 and kept["db_1#2"].policy["backend"] == "expert"


def test_merge_and_lineage_on_object_storage(s3_bucket, tmp_path):
    """The same merge into s3://, and lineage follows its manifest to the folders it read."""
    from agentray.iterate import lineage_lines

    teacher = ParquetSink(storage.join(s3_bucket, "round-0", "collect", "trajectories"))
    assert teacher.add(db_record("db_0", "Answer: 3", 1.0, None))
    teacher.flush()
    storage.write_json(
        storage.join(s3_bucket, "round-0", "collect", "manifest.json"),
        {"stage": "collect", "status": "ok", "config": {"policy": {"backend": "expert"}}},
    )
    explored = trajectory_folder(tmp_path / "s0", [db_record("db_1", "Answer: 5", 1.0, 0)])
    out = storage.join(s3_bucket, "round-1", "merge")
    sources = [{"path": teacher.out_dir}]
    counts = merge_round(
        sources, [explored], IterateConfig(), ProcessConfig(check_actions=False), out
    )
    assert counts["kept_by_source"] == {"teacher": 1, "round-0": 1}
    assert len(read_trajectories(storage.join(out, "trajectories"))) == 2
    lines = lineage_lines(storage.join(out, "trajectories"))
    assert lines[0].startswith(f"└ merge [ok] {out} ")
    assert any(f"collect [ok] {s3_bucket}/round-0/collect" in line for line in lines[1:])
    assert any(line.strip() == f"└ input {tmp_path / 's0'}" for line in lines[1:])
