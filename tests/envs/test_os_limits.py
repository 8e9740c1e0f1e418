"""The OS sandbox's limits: processes, disk, memory, CPU time, file size and output, each
enforced and named in the observation; many episodes at once; no limit lost silently.

Process counts are read from the host's /proc: the processes a step added in its sandboxes
(descendants of this test's process in a bubblewrap tree, or anything running as the
sandbox's user), sampled while a step runs; other users of the machine and whatever else
this pytest process starts meanwhile (Ray's workers, their helpers) do not count."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agentray.envs import scratch as scratch_module
from agentray.envs.os import OSConfig, OSEnv
from agentray.envs.sandbox import NOBODY, Sandbox, bwrap_available
from agentray.envs.sandbox_limits import SandboxLimits
from agentray.envs.scratch import Scratch, scratch_mounts

pytestmark = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap cannot run here")

# A bounded fork bomb: a binary tree of bash subshells 8 deep (511 processes unlimited),
# each leaf sleeping 3 s; it needs far more processes than the limits used here.
BOMB = "b() { if [ $1 -gt 0 ]; then b $(($1-1)) & b $(($1-1)) & wait; else exec sleep 3; fi; }; b 8"
CLASSIC_BOMB = ":(){ :|:& };:"


def _bash(command: str) -> str:
    return f"Think: run it.\n\nAct: bash\n\n```bash\n{command}\n```"


def _env(**settings) -> OSEnv:
    env = OSEnv(OSConfig(n_train=2, n_test=1, **settings))
    env.reset(env.tasks("train")[0])
    return env


def _process_table() -> dict[int, tuple[int, str]]:
    """Every live process on the host: pid -> (parent pid, command name)."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    head, tail = f.read().rsplit(")", 1)
                table[int(entry.name)] = (int(tail.split()[1]), head.split("(", 1)[1])
            except (OSError, IndexError, ValueError):
                continue
    return table


def _ancestry(pid: int, table: dict[int, tuple[int, str]], ancestor: int) -> list[int] | None:
    """``pid`` and its parents up to ``ancestor`` (excluded), or None: not a descendant."""
    chain = [pid]
    up = table[pid][0]
    for _ in range(64):
        if up == ancestor:
            return chain
        if up not in table:
            return None
        chain.append(up)
        up = table[up][0]
    return None


def sandbox_processes(before: set[int]) -> int:
    """How many processes this test's sandboxes run now: new descendants with a bubblewrap
    process among themselves or their parents (what an agent's command can spawn, and
    bubblewrap's own), nothing else this pytest process may be starting meanwhile."""
    me = os.getpid()
    table = _process_table()
    count = 0
    for pid in table.keys() - before:
        chain = _ancestry(pid, table, me)
        if chain is not None and any(table[p][1] == "bwrap" for p in chain):
            count += 1
    return count


def _uid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
    except (OSError, StopIteration, ValueError):
        return None


def new_processes(before: set[int]) -> set[int]:
    """The sandboxes' processes that were not there ``before``: new descendants of this
    process in a bubblewrap tree, and any new process on the host running as the sandbox's
    user (one that left the tree would still be one of those)."""
    me = os.getpid()
    table = _process_table()
    found = set()
    for pid in table.keys() - before:
        chain = _ancestry(pid, table, me)
        in_sandbox = chain is not None and any(table[p][1] == "bwrap" for p in chain)
        if in_sandbox or _uid(pid) == NOBODY:
            found.add(pid)
    return found


def assert_nothing_outlived(before: set[int], grace_s: float = 10.0) -> None:
    """No process the step started is left, once the ones it killed have exited (on a loaded
    machine a killed process may take a moment to go); names what is left otherwise."""
    deadline = time.monotonic() + grace_s
    while (left := new_processes(before)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, {pid: _cmdline(pid) for pid in left}


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "<gone>"


class PeakProcesses:
    """Samples how many sandbox processes the ``with`` block ran at once, at its peak."""

    def __enter__(self) -> PeakProcesses:
        self.before = set(_process_table())
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sandbox_processes(self.before))
            time.sleep(0.02)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def test_a_fork_bomb_is_held_to_the_process_limit_and_nothing_outlives_the_step():
    env = _env(max_processes=64, command_timeout_s=4)
    before = set(_process_table())
    with PeakProcesses() as peak:
        result = env.step(_bash(BOMB))
    # the sandbox's 64 (its init included) plus bubblewrap's own monitor process
    assert peak.peak <= 64 + 2, peak.peak
    assert_nothing_outlived(before)
    assert "[sandbox] process limit (64) reached" in result.observation
    assert not result.done

    with PeakProcesses() as peak:
        result = env.step(_bash(CLASSIC_BOMB + "; sleep 1"))
    assert peak.peak <= 64 + 2, peak.peak
    assert_nothing_outlived(before)
    # the episode goes on: the next command has its full allowance again
    result = env.step(_bash("for i in $(seq 40); do sleep 1 & done; wait; echo all-40"))
    assert result.observation == "The output of the OS:\n\nall-40\n"
    env.close()


def test_filling_the_disk_stops_at_the_quota_and_the_agent_is_told():
    env = _env(scratch_mb=16, tmp_mb=16, max_file_mb=1024, command_timeout_s=20)
    tmp_full = "[sandbox] disk quota full: /tmp and /dev/shm hold 16 MiB each"
    result = env.step(_bash("dd if=/dev/zero of=/tmp/x bs=1M count=1000; du -m /tmp/x"))
    assert "No space left on device" in result.observation
    assert result.observation.endswith(tmp_full)
    assert int(re.search(r"(\d+)\s+/tmp/x", result.observation).group(1)) <= 16

    result = env.step(_bash("dd if=/dev/zero of=big bs=1M count=1000"))
    assert result.observation.endswith("[sandbox] disk quota full: /root holds 16 MiB")
    written = sum(f.stat().st_size for f in env.scratch_root.rglob("*") if f.is_file())
    assert 15 << 20 <= written <= 16 << 20
    result = env.step(_bash("rm big; echo small > note && cat note"))
    assert result.observation == "The output of the OS:\n\nsmall\n"  # room again, no note

    # /dev/shm is sized like /tmp, and nothing else is writable
    result = env.step(_bash("dd if=/dev/zero of=/dev/shm/x bs=1M count=100"))
    assert "No space left on device" in result.observation
    assert result.observation.endswith(tmp_full)
    for path in ("/x", "/dev/x", "/usr/x", "/etc/x"):
        result = env.step(_bash(f"touch {path}"))
        assert "Read-only file system" in result.observation, path
    env.close()


def test_a_memory_hog_is_stopped():
    env = _env(max_memory_mb=256)
    result = env.step(_bash('python3 -c "b = bytearray(1 << 30)"; echo rc=$?'))
    assert "MemoryError" in result.observation and "rc=1" in result.observation
    assert result.observation.endswith("[sandbox] memory limit (256 MiB per process) reached")
    result = env.step(_bash('python3 -c "b = bytearray(64 << 20); print(len(b))"'))
    assert result.observation == f"The output of the OS:\n\n{64 << 20}\n"
    env.close()


def test_a_cpu_spinner_is_stopped_at_the_cpu_time_limit():
    env = _env(max_cpu_s=1, command_timeout_s=120)
    start = time.monotonic()
    result = env.step(_bash("bash -c 'while :; do :; done'; echo rc=$?"))
    assert "rc=152" in result.observation  # 128 + SIGXCPU
    assert result.observation.endswith("[sandbox] CPU time limit (1 s per process) reached")
    result = env.step(_bash("while :; do :; done"))  # the command's own shell spins
    assert result.info["exit_code"] == 152
    assert result.observation.endswith("[sandbox] CPU time limit (1 s per process) reached")
    assert time.monotonic() - start < 100  # far below the wall limit twice over
    env.close()


def test_the_file_size_limit_holds_and_is_named():
    env = _env(max_file_mb=1)
    result = env.step(_bash("dd if=/dev/zero of=big bs=64k count=100; echo rc=$?"))
    assert "rc=153" in result.observation  # 128 + SIGXFSZ
    assert result.observation.endswith("[sandbox] file size limit (1 MiB) reached")
    assert (env.scratch_root / "big").stat().st_size == 1 << 20
    # Python ignores SIGXFSZ: its write fails with EFBIG instead
    result = env.step(_bash("python3 -c \"open('p', 'wb').write(bytes(2 << 20))\""))
    assert "File too large" in result.observation
    assert result.observation.endswith("[sandbox] file size limit (1 MiB) reached")
    env.close()


def test_the_output_limit_keeps_the_head_drains_the_rest_and_still_sees_the_end(scratch):
    box = Sandbox(scratch, timeout_s=20, max_output_bytes=4096, limits=SandboxLimits(tmp_mb=1))
    result = box.run("head -c 1000000 /dev/zero | tr '\\0' a; echo; echo END")
    assert result.output == "a" * 4096 and not result.timed_out and result.exit_code == 0
    # the limit a command hits after the cap is still named
    result = box.run(
        "head -c 100000 /dev/zero | tr '\\0' a; dd if=/dev/zero of=/tmp/x bs=1M count=5"
    )
    assert len(result.output) == 4096
    assert result.limits_hit == ("[sandbox] disk quota full: /tmp and /dev/shm hold 1 MiB each",)
    box = Sandbox(scratch, timeout_s=1, max_output_bytes=4096)
    result = box.run("yes")
    assert result.timed_out and result.output == "y\n" * 2048


def test_limits_hold_where_prlimit_is_missing(monkeypatch, scratch):
    real_which = shutil.which
    monkeypatch.setattr(
        shutil, "which", lambda name, *a, **k: None if name == "prlimit" else real_which(name)
    )
    box = Sandbox(scratch, timeout_s=20, limits=SandboxLimits(memory_mb=256, file_mb=1))
    result = box.run('python3 -c "b = bytearray(1 << 30)"')
    assert "MemoryError" in result.output and result.exit_code == 1
    result = box.run("dd if=/dev/zero of=big bs=64k count=100")
    assert result.exit_code == 153 and (scratch / "big").stat().st_size == 1 << 20


def test_sixteen_episodes_at_once_each_get_their_own_allowance():
    """16 x 40 sleeping processes run at once under a limit of 64 per command: counted per
    episode, not shared; a fork bomb in a 17th episode is held to its own 64."""
    envs = [_env(max_processes=64, command_timeout_s=30) for _ in range(17)]
    roots = [env.scratch_root for env in envs]
    commands = ["for i in $(seq 40); do sleep 3 & done; wait; echo all-40"] * 16 + [BOMB]
    before = set(_process_table())
    with PeakProcesses() as peak, ThreadPoolExecutor(len(envs)) as pool:
        steps = [pool.submit(env.step, _bash(c)) for env, c in zip(envs, commands, strict=True)]
        results = [step.result() for step in steps]
    for result in results[:16]:
        assert result.observation == "The output of the OS:\n\nall-40\n"
    assert "[sandbox] process limit (64) reached" in results[16].observation
    assert peak.peak <= 17 * (64 + 2), peak.peak
    assert peak.peak >= 16 * 40 // 2  # they did run side by side
    assert_nothing_outlived(before)
    for env in envs:
        env.close()
    assert not set(roots) & set(scratch_mounts()) and not any(r.exists() for r in roots)


def test_a_scratch_quota_that_cannot_be_mounted_fails_the_episode_start_loudly():
    """Root without CAP_SYS_ADMIN (a container's default): scratch_mb refuses to start,
    naming the knob; with scratch_mb: null the episode runs, still under the process limit."""
    script = (
        "from agentray.envs.os import OSConfig, OSEnv\n"
        "from agentray.envs.sandbox import SandboxUnavailable\n"
        "env = OSEnv(OSConfig(n_train=1, n_test=1, max_processes=32))\n"
        "try:\n"
        "    env.reset(env.tasks('train')[0])\n"
        "except SandboxUnavailable as e:\n"
        "    print('REFUSED', e)\n"
        "env = OSEnv(OSConfig(n_train=1, n_test=1, max_processes=32, scratch_mb=None))\n"
        "env.reset(env.tasks('train')[0])\n"
        "print(env.step('Act: bash\\n\\n```bash\\nulimit -u; id -u\\n```').observation)\n"
        "env.close()\n"
    )
    setpriv = shutil.which("setpriv")  # util-linux
    assert setpriv is not None, "setpriv (util-linux) is needed to drop CAP_SYS_ADMIN"
    drop = [setpriv, "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", "--"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run(
        [*drop, sys.executable, "-c", script], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    refused, _, ran = done.stdout.partition("\n")
    assert refused.startswith("REFUSED the OS scratch quota (scratch_mb=256)"), refused
    assert "CAP_SYS_ADMIN" in refused and "scratch_mb: null" in refused
    assert ran == "The output of the OS:\n\n32\n0\n\n"


def test_scratch_mounts_left_by_a_killed_process_are_swept(monkeypatch):
    script = (
        "import os, signal\n"
        "from agentray.envs.scratch import Scratch\n"
        "s = Scratch(None, 4)\n"
        "print(s.path, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    left = Path(done.stdout.strip())
    assert done.returncode == -9 and left in scratch_mounts()
    monkeypatch.setattr(scratch_module, "_swept", False)
    fresh = Scratch(None, 4)
    assert left not in scratch_mounts() and not left.exists()
    fresh.release()
    assert fresh.path not in scratch_mounts() and not fresh.path.exists()


@pytest.fixture
def scratch():
    root = Path(tempfile.mkdtemp(prefix="agentray-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)
