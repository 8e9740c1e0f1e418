"""The process stage as a user runs it (`agentray process`, `python -m jobs process`): a bad
shard stops it with one line naming the file; a good run prints a summary table, not
Ray Data's progress blocks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_bad_inputs import _general, _truncate, _write_shards

from agentray import storage

REPO = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, process: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"run_dir": str(tmp_path / "run"), "process": process}))
    return path


def _run(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    }
    return subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.parametrize("entry", ["cli", "job"])
def test_an_unreadable_shard_stops_the_stage_with_one_line(entry, tmp_path, tiny_model_dir):
    trajectories = str(tmp_path / "run" / "collect" / "trajectories")
    _write_shards(trajectories, 2, 2)
    bad = storage.list_files(trajectories, ".parquet")[1]
    _truncate(bad)
    config = _config(tmp_path, {"model": tiny_model_dir})
    args = {
        "cli": ["-m", "agentray.cli", "process", str(config)],
        "job": ["-m", "jobs", "process", "--config", str(config)],
    }[entry]
    result = _run(args, timeout=300)
    said = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 1, said
    assert len(said) == 1, said
    assert said[0].startswith("process: 1 unreadable input file: ") and bad in said[0]
    assert "quarantine_bad_shards" in said[0]
    # nothing was written past the tokenizer: the run stopped before any work
    assert not (tmp_path / "run" / "process" / "train").exists()


RAY_LOG_LINE = re.compile(r"^(\x1b\[\d+m)?\((raylet|[\w.:]*\s?pid=\d+[^)]*)\)")


def test_a_run_prints_a_summary_table_not_ray_data_progress(tmp_path, tiny_model_dir, ray_local):
    _write_shards(str(tmp_path / "run" / "collect" / "trajectories"), 3, 2)
    general = tmp_path / "general.jsonl"
    general.write_text("\n".join(json.dumps(_general(i, system=i < 2)) for i in range(8)))
    config = _config(
        tmp_path,
        {
            "model": tiny_model_dir,
            "general_data": str(general),
            "eta": 0.5,
            "balance": "upsample_agent",
            "max_seq_len": 1024,
        },
    )
    address = ray_local.get_runtime_context().gcs_address  # join the session's cluster
    result = _run(["-m", "agentray.cli", "--address", address, "process", str(config)], 600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    # Ray's own driver-forwarded warnings (a loaded machine may add some) are not the stage's
    lines = [line for line in output.splitlines() if not RAY_LOG_LINE.match(line)]
    assert len(lines) < 60, output
    stdout = [line for line in result.stdout.splitlines() if not RAY_LOG_LINE.match(line)]
    assert stdout == []  # the counts as JSON only with --json
    for expected in ("process: done in", "training examples: agent", "set aside"):
        assert expected in output
    assert f"agentray process: outputs in {tmp_path / 'run' / 'process'}" in output
    for ray_data_line in ("Running Dataset", "Execution plan", "Total Progress"):
        assert ray_data_line not in output
    manifest = json.loads((tmp_path / "run" / "process" / "manifest.json").read_text())
    assert manifest["counts"]["agent_unique_records"] == 6
