"""A throwaway two-node Ray cluster on this machine, for the multi-node tests:
`ray start --head` plus a second `ray start --address ...` node, on free ports and short
temp dirs, torn down by killing their process groups (never `ray stop`)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from agentray.testing import free_port

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def run_job(stage: str, config: Path, address: str, env: dict[str, str], timeout: float):
    """``python -m jobs <stage> --config ...`` as a Ray job driver of the cluster at
    ``address``; asserts it exits 0 (its output tail in the message) and returns it."""
    result = subprocess.run(
        [sys.executable, "-m", "jobs", stage, "--config", str(config)],
        cwd=REPO,
        env={**env, "RAY_ADDRESS": address},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _node_ports() -> list[str]:
    """Ports every node of this machine needs of its own (the session's cluster, started by
    the ray_local fixture, holds the defaults)."""
    return [
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]


def _start_node(args: list[str], env: dict[str, str], temp_dir: str, stack: ExitStack) -> Path:
    """`ray start ... --block` in its own process group, stopped by ending that group (never
    `ray stop`: it would stop every Ray cluster on the machine, the session's too).
    Returns the path of its log."""
    log_path = Path(temp_dir) / f"start-{len(os.listdir(temp_dir))}.log"
    log = stack.enter_context(open(log_path, "w"))  # noqa: SIM115 - closed by the stack
    proc = subprocess.Popen(
        [str(BIN / "ray"), "start", *args, f"--temp-dir={temp_dir}", "--block"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    stack.callback(_stop, proc)
    return log_path


def _stop(proc: subprocess.Popen) -> None:
    # SIGKILL to the group: gcs_server, raylet and agents share it and end at once (workers,
    # in their own groups, exit when their raylet does). A SIGTERM makes `ray start`
    # shut down gracefully, which takes ~40 s here.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


WAIT_FOR_NODES = """
import sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False)
deadline = time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    alive = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    if len(alive) >= int(sys.argv[2]):
        print(" ".join(alive))
        break
    time.sleep(0.2)
"""


def _wait_for_nodes(address: str, n: int, env: dict[str, str], logs: list[Path]) -> list[str]:
    """The ids of the cluster's nodes once ``n`` are alive (a short driver asks the GCS)."""
    result = subprocess.run(
        [sys.executable, "-c", WAIT_FOR_NODES, address, str(n), "150"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    nodes = result.stdout.split()
    if len(nodes) < n:
        starts = "\n".join(log.read_text()[-2000:] for log in logs)
        raise AssertionError(f"{len(nodes)} of {n} nodes came up:\n{result.stderr[-2000:]}{starts}")
    return nodes


@pytest.fixture()
def two_node_cluster() -> Iterator[tuple[str, list[str], dict[str, str]]]:
    """(GCS address, node ids, env) of a head with 1 CPU and a second node with 2 CPUs."""
    # short: Ray's unix socket paths under it must stay within 107 bytes
    head_dir = tempfile.mkdtemp(prefix="rh", dir="/tmp")
    worker_dir = tempfile.mkdtemp(prefix="rw", dir="/tmp")
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, head_dir, ignore_errors=True)
        stack.callback(shutil.rmtree, worker_dir, ignore_errors=True)
        head_log = _start_node(
            [
                "--head",
                f"--port={port}",
                "--num-cpus=1",
                "--include-dashboard=false",
                f"--ray-client-server-port={free_port()}",
                "--disable-usage-stats",
                *_node_ports(),
            ],
            env,
            head_dir,
            stack,
        )
        # the second node joins while the head is still starting: `ray start` retries
        worker_log = _start_node(
            [f"--address={address}", "--num-cpus=2", *_node_ports()], env, worker_dir, stack
        )
        nodes = _wait_for_nodes(address, 2, env, [head_log, worker_log])
        yield address, nodes, env
