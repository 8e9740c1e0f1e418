"""A stage submitted as a Ray job to a real local cluster started with `ray start --head`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def local_cluster(tmp_path):
    port, dash = _free_port(), _free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    start = [
        str(BIN / "ray"),
        "start",
        "--head",
        f"--port={port}",
        "--num-cpus=2",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash}",
        f"--temp-dir={tmp_path / 'ray'}",
        "--disable-usage-stats",
    ]
    subprocess.run(start, check=True, env=env, capture_output=True, timeout=120)
    try:
        yield f"http://127.0.0.1:{dash}", env
    finally:
        subprocess.run(
            [str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=120
        )


def test_collect_job_submitted_to_local_cluster_succeeds(local_cluster, tmp_path):
    address, env = local_cluster
    run_dir = tmp_path / "run"
    config = tmp_path / "collect.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(run_dir),
                "collect": {
                    "families": ["db"],
                    "family_configs": {"db": {"n_train": 4, "n_test": 2}},
                    "policy": {"backend": "expert"},
                    "rollout": {"num_env_pools": 1, "max_in_flight": 4},
                },
            }
        )
    )
    submit = [
        str(BIN / "ray"),
        "job",
        "submit",
        "--address",
        address,
        "--working-dir",
        str(REPO),
        "--",
        sys.executable,
        "-m",
        "jobs.collect",
        "--config",
        str(config),
    ]
    deadline = time.time() + 300
    result = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "succeeded" in (result.stdout + result.stderr).lower()
    assert time.time() < deadline
    shards = list((run_dir / "collect" / "trajectories").glob("*.parquet"))
    assert shards, "the job wrote no trajectories"
    manifest = yaml.safe_load((run_dir / "collect" / "manifest.json").read_text())
    assert manifest["counts"]["written_total"] == 4
