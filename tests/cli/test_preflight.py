"""A stage whose endpoint is down fails in seconds, before any work, with the URL and the
error: `agentray eval`, `python -m jobs collect` and `agentray instruct` against a closed
port exit 1 with one line naming the URL (the issue's bound: under 30 s)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agentray.cli import app

REPO = Path(__file__).resolve().parents[2]
BOUND_S = 30.0


@pytest.fixture
def dead_url() -> Iterator[str]:
    """The URL of a port that is bound but not listening: every connection is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def _policy(url: str) -> dict:
    return {"backend": "openai", "model": "agentray", "base_url": url}


def _run(args: list[str], tmp_path: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    return result, time.perf_counter() - started


def _assert_loud(result: subprocess.CompletedProcess, seconds: float, url: str, stage: str):
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert seconds < BOUND_S, seconds
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{stage}: policy endpoint {url} is not usable: GET /models: ")
    assert "Connection refused" in last, last
    assert "Traceback" not in result.stderr


def test_eval_against_a_closed_port_exits_1_in_seconds_naming_the_url(dead_url, tmp_path):
    run_dir = tmp_path / "run"
    config = {
        "run_dir": str(run_dir),
        "eval": {
            "families": ["db"],
            "max_tasks_per_family": 1,
            "general": {"suites": ["mmlu"], "max_items": 1},
            "policy": _policy(dead_url),
        },
    }
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(config))
    result, seconds = _run(["-m", "agentray.cli", "eval", str(path)], tmp_path)
    _assert_loud(result, seconds, dead_url, "eval")
    assert not (run_dir / "eval").exists()  # nothing was run, nothing written


def test_a_collect_job_against_a_closed_port_exits_1_in_seconds(dead_url, tmp_path):
    run_dir = tmp_path / "run"
    config = {
        "run_dir": str(run_dir),
        "collect": {"families": ["db"], "max_tasks_per_family": 1, "policy": _policy(dead_url)},
    }
    path = tmp_path / "collect.yaml"
    path.write_text(yaml.safe_dump(config))
    result, seconds = _run(["-m", "jobs", "collect", "--config", str(path)], tmp_path)
    _assert_loud(result, seconds, dead_url, "collect")
    assert not (run_dir / "collect").exists()


def test_instruct_against_a_closed_port_exits_1_naming_the_teacher(dead_url, tmp_path):
    config = {"run_dir": str(tmp_path / "run"), "instruct": {"families": ["db"]}}
    path = tmp_path / "instruct.yaml"
    path.write_text(yaml.safe_dump(config))
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["instruct", str(path), "--base-url", dead_url])
    assert result.exit_code == 1, result.output
    assert time.perf_counter() - started < BOUND_S
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"instruct: teacher endpoint {dead_url} is not usable: GET /models")
    assert not (tmp_path / "run" / "instruct" / "rejected.jsonl").exists()
