"""A stage submitted as a Ray job to a real local cluster started with `ray start --head`."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_dashboard(
    url: str, head: subprocess.Popen, log: Path, timeout_s: float = 120
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert head.poll() is None, f"ray start exited:\n{log.read_text()}"
        try:
            if requests.get(f"{url}/api/version", timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the dashboard did not come up:\n{log.read_text()}")


@pytest.fixture()
def local_cluster():
    port, dash = _free_port(), _free_port()
    # short: Ray's unix socket paths under it must stay within 107 bytes
    temp_dir = tempfile.mkdtemp(prefix="rj", dir="/tmp")
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
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        # the session's own cluster (ray_local) holds the default agent and metrics ports
        f"--dashboard-agent-listen-port={_free_port()}",
        f"--dashboard-agent-grpc-port={_free_port()}",
        f"--runtime-env-agent-port={_free_port()}",
        f"--metrics-export-port={_free_port()}",
        f"--ray-client-server-port={_free_port()}",
    ]
    # --block keeps `ray start` in the foreground, so this cluster (and not the session's
    # own, as `ray stop` would) is stopped by ending that one process group.
    log = open(Path(temp_dir) / "start.log", "w")  # noqa: SIM115 - closed in finally
    head = subprocess.Popen(
        [*start, "--block"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        _wait_for_dashboard(f"http://127.0.0.1:{dash}", head, Path(temp_dir) / "start.log")
        yield f"http://127.0.0.1:{dash}", env
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_collect_job_submitted_to_local_cluster_succeeds(local_cluster, tmp_path):
    address, env = local_cluster
    run_dir = tmp_path / "run"
    config = tmp_path / "collect.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(run_dir),
                "envs": {"db": {"n_train": 4, "n_test": 2}},
                "collect": {
                    "families": ["db"],
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
        "jobs",
        "collect",
        "--config",
        str(config),
    ]
    result = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "succeeded" in (result.stdout + result.stderr).lower()
    assert f"agentray collect: outputs in {run_dir / 'collect'}" in result.stdout + result.stderr
    shards = list((run_dir / "collect" / "trajectories").glob("*.parquet"))
    assert shards, "the job wrote no trajectories"
    manifest = yaml.safe_load((run_dir / "collect" / "manifest.json").read_text())
    assert manifest["counts"]["written_total"] == 4

    # the same job with a relative run_dir would write into Ray's package folder: refused
    relative = subprocess.run(
        [*submit, "--run-dir", "runs/lost"], env=env, capture_output=True, text=True, timeout=300
    )
    said = relative.stdout + relative.stderr
    assert relative.returncode != 0, said[-3000:]
    assert "'runs/lost' is relative, and this is a Ray job" in said, said[-3000:]
    assert "--run-dir /mnt/shared/runs/x" in said
    assert not (REPO / "runs" / "lost").exists()
