"""clusters/local.sh starts a Ray cluster of its own and `down` ends only that one: the
session's own cluster (ray_local) keeps answering."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from agentray.testing import free_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _script(command: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "clusters" / "local.sh"), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies left for an init that does
    not reap them are ended)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def test_local_cluster_up_and_down_touch_only_their_own_processes(ray_local):
    # short: Ray's unix socket paths under it must stay within 107 bytes
    state = tempfile.mkdtemp(prefix="lc", dir="/tmp")
    env = {
        **os.environ,
        "AGENTRAY_LOCAL_CLUSTER": state,
        "RAY_PORT": str(free_port()),
        "RAY_DASHBOARD_PORT": str(free_port()),
        "RAY": str(BIN / "ray"),
    }
    env.pop("RAY_ADDRESS", None)
    up = _script("up", env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"127.0.0.1:{env['RAY_PORT']} (1 nodes)" in up.stdout
        pgid = int(Path(state, "head.pgid").read_text())
        assert _alive(pgid)
        again = _script("up", env)
        assert again.returncode == 1 and "already up" in again.stderr
    finally:
        down = _script("down", env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not _alive(pgid) and not Path(state).exists()

    @ray_local.remote
    def still_here() -> int:
        return 1

    assert ray_local.get(still_here.remote(), timeout=60) == 1  # the session's cluster
