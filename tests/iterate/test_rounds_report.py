"""The report across rounds, from round folders written by the real stage functions
(manifests, merge_round, build_scores): scores by round, data per round, exploration."""

from __future__ import annotations

from pathlib import Path

import yaml
from iterate_records import db_record, trajectory_folder
from typer.testing import CliRunner

from agentray import storage
from agentray.cli import app
from agentray.config import IterateConfig
from agentray.eval.overall import load_reference
from agentray.eval.report import build_scores
from agentray.iterate import write_rounds_report
from agentray.iterate.merge import merge_round
from agentray.manifest import write_manifest
from agentray.process import ProcessConfig


def _scores(here: str, db: float, gsm: float) -> None:
    tasks = {"held_in": {"db": {"score": db}}, "general": {"gsm_symbolic": {"score": gsm}}}
    scores = build_scores(tasks, {}, load_reference(), None, {"model": here})
    storage.write_json(storage.join(here, "eval", "scores.json"), scores)


def _fake_run(run: str) -> None:
    """Round 0: the teacher's 2 episodes; round 1: 3 explored by round 0's model, 2 passed,
    1 new kept (db_2); round 2: explored but not evaluated yet."""
    r0 = storage.join(run, "round-0")
    teacher = trajectory_folder(
        storage.join(r0, "collect", "trajectories"),
        [db_record("db_0", "Answer: 3", 1.0, None), db_record("db_1", "Answer: 5", 1.0, None)],
    )
    write_manifest(storage.join(r0, "collect"), "collect", {}, counts={"episodes": 2})
    write_manifest(storage.join(r0, "process"), "process", {}, counts={"agent_unique_records": 2})
    _scores(r0, 20.0, 10.0)
    process = ProcessConfig(check_actions=False)
    it = IterateConfig(keep_per_task=1)
    r1 = storage.join(run, "round-1")
    sample = trajectory_folder(
        storage.join(r1, "explore", "sample-0", "collect", "trajectories"),
        [
            db_record("db_0", "Answer: 3", 1.0, 0),  # the teacher's very conversation
            db_record("db_1", "Answer: 4", 0.0, 0),  # failed
            db_record("db_2", "Answer: 7", 1.0, 0),
        ],
    )
    merge_round([teacher], [sample], it, process, storage.join(r1, "merge"))
    write_manifest(storage.join(r1, "process"), "process", {}, counts={"agent_unique_records": 3})
    _scores(r1, 40.0, 12.5)
    r2 = storage.join(run, "round-2")
    sample = trajectory_folder(
        storage.join(r2, "explore", "sample-0", "collect", "trajectories"),
        [db_record("db_3", "Answer: 1", 1.0, 1)],
    )
    merged = {"path": storage.join(r1, "merge", "trajectories")}
    merge_round([merged], [sample], it, process, storage.join(r2, "merge"))


def test_rounds_report_on_object_storage(s3_bucket):
    run = storage.join(s3_bucket, "run")
    _fake_run(run)
    written = write_rounds_report(run)
    assert written["report"] == storage.join(run, "rounds.md")
    md = storage.read_text(written["report"])
    # scores by round per task and the category's Overall; round 2 not evaluated yet
    assert "| task | round 0 | round 1 | round 2 |" in md
    assert "| db | 20.000 | 40.000 | — |" in md
    assert "| gsm_symbolic | 10.000 | 12.500 | — |" in md
    assert md.count("| **Overall** |") == 2  # held-in and general; no held-out task ran
    # data: round 0 the teacher's, round 1 explored 3, 2 passed, 1 new kept, 3 merged
    assert "| 0 | teacher | 2 | — | — | — | 2 |" in md
    assert "| 1 | round 0's model | 3 | 2 | 1 | 3 | 3 |" in md
    assert "| 2 | round 1's model | 1 | 1 | 1 | 4 | — |" in md
    assert "| db | 2/3 (0.67) | 1/1 (1.00) |" in md
    for plot in ("rounds_scores.png", "rounds_data.png"):
        assert storage.read_bytes(storage.join(run, "plots", plot))[:4] == b"\x89PNG"
    page = storage.read_text(written["report_html"])
    assert "data:image/png;base64," in page and "round 0&#x27;s model" in page
    rounds = storage.read_json(written["json"])["rounds"]
    assert [r["categories"]["held_in"]["tasks"].get("db") for r in rounds] == [20.0, 40.0, None]


def test_iterate_report_only_rerenders_and_fails_loud_without_rounds(tmp_path: Path):
    run = tmp_path / "run"
    config = tmp_path / "iterate.yaml"
    config.write_text(yaml.safe_dump({"run_dir": str(run)}))
    missing = CliRunner().invoke(app, ["iterate", str(config), "--report-only"])
    assert missing.exit_code == 2
    assert f"{run}: no round-0 folder" in missing.output
    _fake_run(str(run))
    result = CliRunner().invoke(app, ["iterate", str(config), "--report-only"])
    assert result.exit_code == 0, result.output
    assert (run / "rounds.md").is_file() and (run / "rounds.html").is_file()
    assert "| db | 20.000 | 40.000 | — |" in (run / "rounds.md").read_text()
