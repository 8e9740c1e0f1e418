"""Throwaway Ray clusters on this machine, in the shape of a real one.

``ray start --head`` plus further ``ray start --address ...`` nodes, each with its own temp
dir and free ports, stopped by ending their process groups (never ``ray stop``, which would
stop every Ray cluster on the machine). An *isolated* node runs in its own mount namespace
(bubblewrap) with a private ``/tmp`` and home: like a second machine of the same image, it
sees the installed code and nothing the head wrote, so a run only works there if its
artifacts go through storage every node reaches (a URI).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agentray.testing import free_port

BIN = Path(sys.executable).parent
# the checkout agentray is imported from (an editable install points here)
SOURCE_ROOT = Path(__file__).resolve().parents[2]

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

ISOLATED_NODES = """
import sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False)
deadline = time.monotonic() + 60  # a node's resources may show a moment after it is alive
while True:
    found = [n["NodeID"] for n in ray.nodes() if n["Alive"] and sys.argv[2] in n["Resources"]]
    if found or time.monotonic() > deadline:
        break
    time.sleep(0.5)
print(" ".join(found))
"""
# a custom resource that marks the isolated nodes (to find them, or to place work there)
ISOLATED_RESOURCE = "agentray_isolated_node"


def _node_ports() -> list[str]:
    """Ports each node needs of its own (another cluster may hold Ray's defaults)."""
    return [
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]


def isolation_prefix(keep: list[Path]) -> list[str]:
    """bubblewrap: this machine's filesystem, but a fresh, empty ``/tmp``; ``keep`` (the
    installed code, which a node of the same image would have) stays visible."""
    binds = [arg for path in keep for arg in ("--bind", str(path), str(path))]
    return ["bwrap", "--dev-bind", "/", "/", "--tmpfs", "/tmp", *binds, "--"]


class LocalCluster:
    """A head and nodes on this machine; ``with LocalCluster(env) as cluster: ...``."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        base = dict(os.environ if env is None else env)
        base.pop("RAY_ADDRESS", None)
        base["RAY_AUTH_MODE"] = "disabled"
        # `python` in a job's entrypoint is this interpreter, as on a node of one image
        base["PATH"] = f"{BIN}{os.pathsep}{base.get('PATH', '')}"
        self.env = base
        self.address = ""
        self.dashboard_url = ""
        self._procs: list[subprocess.Popen] = []
        self._dirs: list[str] = []
        self.logs: list[Path] = []

    def start_head(self, num_cpus: int, dashboard: bool = False) -> str:
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        args = ["--head", f"--port={port}", f"--num-cpus={num_cpus}", "--disable-usage-stats"]
        args.append(f"--ray-client-server-port={free_port()}")
        if dashboard:
            dash = free_port()
            args += ["--dashboard-host=127.0.0.1", f"--dashboard-port={dash}"]
            self.dashboard_url = f"http://127.0.0.1:{dash}"
        else:
            args.append("--include-dashboard=false")
        self._start([*args, *_node_ports()], self._temp_dir("rh"), self.env)
        return self.address

    def add_node(self, num_cpus: int, isolated: bool = False, keep: list[Path] = ()) -> None:
        """A node joining the head; ``isolated``: in its own mount namespace (see module),
        where besides the installed code only the folders in ``keep`` (more software the
        node's image would have) stay visible."""
        if not isolated:
            self._start(self._join_args(num_cpus), self._temp_dir("rw"), self.env)
            return
        home = "/tmp/home"
        env = {**self.env, "HOME": home, "AGENTRAY_HOME": f"{home}/agentray", "TMPDIR": "/tmp"}
        keep = sorted({Path(sys.prefix), SOURCE_ROOT, *map(Path, keep)})
        args = [*self._join_args(num_cpus), f'--resources={{"{ISOLATED_RESOURCE}": 1}}']
        self._start(args, "/tmp/ray", env, isolation_prefix(keep))

    def _join_args(self, num_cpus: int) -> list[str]:
        return [f"--address={self.address}", f"--num-cpus={num_cpus}", *_node_ports()]

    def isolated_node_ids(self) -> list[str]:
        """The ids of the isolated nodes (they carry the resource ``ISOLATED_RESOURCE``)."""
        result = subprocess.run(
            [sys.executable, "-c", ISOLATED_NODES, self.address, ISOLATED_RESOURCE],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(result.stderr[-2000:])
        if not result.stdout.split():
            starts = "\n".join(log.read_text()[-2000:] for log in self.logs)
            raise RuntimeError(f"no isolated node came up:\n{starts}")
        return result.stdout.split()

    def _temp_dir(self, prefix: str) -> str:
        # short: Ray's unix socket paths under it must stay within 107 bytes
        path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        self._dirs.append(path)
        return path

    def _start(
        self, args: list[str], temp_dir: str, env: dict[str, str], prefix: list[str] = ()
    ) -> None:
        """``ray start ... --block`` in its own process group (see ``stop``)."""
        log_path = Path(self._temp_dir("rl")) / "start.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [*prefix, str(BIN / "ray"), "start", *args, f"--temp-dir={temp_dir}", "--block"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._procs.append(proc)
        self.logs.append(log_path)

    def wait_for_nodes(self, n: int, timeout_s: float = 150) -> list[str]:
        """The ids of the cluster's nodes once ``n`` are alive (a short driver asks)."""
        result = subprocess.run(
            [sys.executable, "-c", WAIT_FOR_NODES, self.address, str(n), str(timeout_s)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s + 90,
        )
        nodes = result.stdout.split()
        if len(nodes) < n:
            starts = "\n".join(log.read_text()[-2000:] for log in self.logs)
            raise RuntimeError(
                f"{len(nodes)} of {n} nodes came up:\n{result.stderr[-2000:]}{starts}"
            )
        return nodes

    def wait_for_dashboard(self, timeout_s: float = 120) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"{self.dashboard_url}/api/version", timeout=2)
                return
            time.sleep(0.5)
        raise RuntimeError(f"the dashboard did not come up: {self.logs[0].read_text()[-2000:]}")

    def stop(self) -> None:
        # SIGKILL to each group: gcs_server, raylet and agents share it and end at once
        # (workers, in their own groups, exit when their raylet does); a SIGTERM makes
        # `ray start` shut down gracefully, which takes ~40 s here.
        for proc in reversed(self._procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=60)
        self._procs.clear()
        for path in self._dirs:
            shutil.rmtree(path, ignore_errors=True)
        self._dirs.clear()

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
