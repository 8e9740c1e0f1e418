"""A bubblewrap sandbox for the OS family: one ``bwrap`` invocation per command.

Every command runs with ``--unshare-all`` (own network, pid, ipc, uts, user and mount
namespaces: no network but ``lo``), all capabilities dropped, the host's ``/usr`` (and the
``/bin``, ``/lib``... links into it) plus a few harmless ``/etc`` files bound read-only, a
fresh ``/proc`` and ``/dev``, size-limited ``/tmp`` and ``/dev/shm``, a read-only root, and
the episode's scratch directory bound read-write as the home/working directory. State
persists across an episode's commands because they all bind the same scratch directory.

Each command runs under ``SandboxLimits`` (processes, memory, CPU time, file size, ``/tmp``
size; see ``agentray.envs.sandbox_limits``), and ``CommandResult.limits_hit`` names the ones
it ran into. As root, bubblewrap runs as the unprivileged ``uid`` (the agent is still root
inside): root is exempt from the process limit.

A command is killed with its whole process tree when it exceeds ``timeout_s``: the
sandbox's pid 1 is SIGKILLed and the kernel kills everything left in its pid namespace
before bubblewrap returns. When a command ends normally, the namespace's init exits with it,
so background children (``sleep 100 &``) die too: nothing outlives the command.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from agentray.envs.sandbox_limits import (
    SandboxLimits,
    kernel_counts_processes_per_namespace,
    no_space,
)

BWRAP = "bwrap"
# Top-level host paths exposed read-only (as symlinks where the host has merged-/usr links).
_SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")
# /etc entries the tools need (awk and friends resolve through /etc/alternatives); nothing
# secret: no shadow, no ssh keys, no machine credentials.
_ETC_ENTRIES = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "passwd",
    "group",
    "nsswitch.conf",
    "localtime",
    "timezone",
    "bash.bashrc",
    "profile",
    "inputrc",
    "magic",
    "magic.mime",
    "mime.types",
    "os-release",
    "debian_version",
)
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NOBODY = 65534  # the uid the sandbox runs as when agentray runs as root
_TAIL_BYTES = 4096  # output kept past the cap, to see which limit a chatty command hit


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces on this host."""


@dataclass(frozen=True)
class CommandResult:
    output: str  # stdout and stderr interleaved, as a terminal would show them
    exit_code: int  # -9 (SIGKILL) when the command was killed for running too long
    timed_out: bool
    limits_hit: tuple[str, ...] = ()  # "[sandbox] ..." lines, one per limit it ran into


@lru_cache(maxsize=1)
def bwrap_available() -> bool:
    """True when ``bwrap`` is installed and can start a fully unshared sandbox here."""
    if shutil.which(BWRAP) is None:
        return False
    argv = [*_system_binds(), "--unshare-all", "--cap-drop", "ALL", "true"]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def require_bwrap() -> None:
    if not bwrap_available():
        raise SandboxUnavailable(
            "the OS env needs bubblewrap: install it (apt-get install bubblewrap) on a host "
            "that allows unprivileged or root namespaces; `bwrap --unshare-all true` must work"
        )


@lru_cache(maxsize=1)
def _system_binds() -> tuple[str, ...]:
    args: list[str] = [BWRAP]
    for name in _SYSTEM_DIRS:
        host = Path("/") / name
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{name}"]
    for name in _ETC_ENTRIES:
        if (Path("/etc") / name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    return tuple(args)


def sandbox_uid(limits: SandboxLimits, uid: int = NOBODY) -> int | None:
    """The host uid bubblewrap runs as: ``uid`` when agentray is root and a process limit
    is set (RLIMIT_NPROC does not bind root), else None (agentray's own uid)."""
    return uid if os.geteuid() == 0 and limits.processes is not None else None


def check_sandbox(limits: SandboxLimits, uid: int = NOBODY) -> None:
    """Raise ``SandboxUnavailable`` (saying which setting to change) unless a command can run
    here under ``limits``; the probe runs once per process and setting."""
    require_bwrap()
    _probe(limits, uid)


@lru_cache(maxsize=16)
def _probe(limits: SandboxLimits, uid: int) -> None:
    if limits.processes is not None and not kernel_counts_processes_per_namespace():
        raise SandboxUnavailable(
            f"a per-command process limit (max_processes={limits.processes}) needs Linux >= "
            "5.14, where RLIMIT_NPROC counts per user namespace; set max_processes: null"
        )
    with tempfile.TemporaryDirectory(prefix="agentray-sandbox-probe-") as root:
        box = Sandbox(root, timeout_s=30, limits=limits, uid=uid)
        done = box.run("echo ok; cat /proc/self/uid_map")
    run_as = box.run_as if box.run_as is not None else os.geteuid()
    lines = done.output.splitlines()
    if lines[:1] != ["ok"]:
        raise SandboxUnavailable(
            f"the sandbox cannot run a command as uid {run_as} under {limits}: "
            f"{done.output.strip() or f'exit code {done.exit_code}'} (as root, bubblewrap "
            "runs as an unprivileged uid for the process limit, which needs unprivileged user "
            "namespaces: on Ubuntu >= 23.10, sysctl kernel.apparmor_restrict_unprivileged_userns"
            "=0; or set max_processes: null to run it as root without a process limit)"
        )
    host_uids = {line.split()[1] for line in lines[1:] if len(line.split()) == 3}
    if limits.processes is not None and host_uids & {"0"}:
        raise SandboxUnavailable(  # root is exempt from RLIMIT_NPROC
            f"the sandbox runs as host root, where max_processes={limits.processes} cannot "
            "hold; set max_processes: null to run without a process limit"
        )


class Sandbox:
    """Runs shell commands over one scratch directory, each in a fresh bubblewrap sandbox.

    Where bubblewrap runs as another uid (``sandbox_uid``), the directory's tree is handed
    to that uid here: create the files first."""

    def __init__(
        self,
        root: Path | str,
        timeout_s: float = 5.0,
        workdir: str = "/root",
        max_output_bytes: int = 1 << 20,
        limits: SandboxLimits | None = None,
        uid: int = NOBODY,
    ) -> None:
        self.root = Path(root)
        self.timeout_s = timeout_s
        self.workdir = workdir
        self.max_output_bytes = max_output_bytes
        self.limits = limits or SandboxLimits()
        self.run_as = sandbox_uid(self.limits, uid)
        if self.run_as is not None and self.root.is_dir():
            _require_reachable(self.root, self.run_as)
            _hand_over(self.root, self.run_as)

    def argv(
        self, command: str, args: tuple[str, ...] | list[str] = (), info_fd: int | None = None
    ) -> list[str]:
        """The full ``bwrap`` command line that runs ``bash -c command`` with ``args`` as $1..."""
        return [
            *_system_binds(),
            "--unshare-all",
            *self._identity(),
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--hostname",
            "sandbox",
            *(["--info-fd", str(info_fd)] if info_fd is not None else []),
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            *_tmpfs(self.limits.tmp_mb, "/dev/shm"),
            "--remount-ro",
            "/dev",
            *_tmpfs(self.limits.tmp_mb, "/tmp"),
            "--bind",
            str(self.root.resolve()),
            self.workdir,
            "--remount-ro",  # last: nothing but /tmp, /dev/shm and the workdir is writable
            "/",
            "--chdir",
            self.workdir,
            "--clearenv",
            "--setenv",
            "PATH",
            _PATH,
            "--setenv",
            "HOME",
            self.workdir,
            "--setenv",
            "LANG",
            "C.UTF-8",
            "--setenv",
            "TERM",
            "dumb",
            "bash",
            "-c",
            self.limits.ulimit_script(),
            "bash",
            command,
            "bash",
            *args,
        ]

    def _identity(self) -> list[str]:
        # Unprivileged bubblewrap maps its uid to root inside, as the root one is already.
        if self.run_as is None and os.geteuid() == 0:
            return []
        return ["--unshare-user", "--uid", "0", "--gid", "0"]

    def _credentials(self) -> dict[str, Any]:
        if self.run_as is None:
            return {}
        return {"user": self.run_as, "group": self.run_as, "extra_groups": []}

    def run(self, command: str, args: tuple[str, ...] | list[str] = ()) -> CommandResult:
        """Run ``command`` with bash; never raises for the command's own failures."""
        if not self.root.is_dir():
            raise SandboxUnavailable(f"sandbox root {self.root} does not exist")
        full_before = self._scratch_full()
        info_read, info_write = os.pipe()
        try:
            proc = subprocess.Popen(
                self.argv(command, args, info_write),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as one on timeout
                pass_fds=(info_write,),
                **self._credentials(),
            )
        except BaseException:
            os.close(info_read)
            raise
        finally:
            os.close(info_write)
        deadline = time.monotonic() + self.timeout_s
        try:
            output, tail, finished = self._read_until(proc, deadline)
            if finished:
                finished = _wait(proc, deadline)
        finally:
            if proc.poll() is None:
                _kill(proc, info_read)
            proc.stdout.close()
            os.close(info_read)
        text = output.decode("utf-8", errors="replace")
        seen = text + tail.decode("utf-8", errors="replace")
        # The scratch quota is news when this command filled it or was refused by it.
        filled = self._scratch_full() and (not full_before or no_space(seen))
        notes = self.limits.notes(seen, proc.returncode, filled, self.workdir)
        return CommandResult(text, proc.returncode, not finished, tuple(notes))

    def _scratch_full(self) -> bool:
        if self.limits.scratch_mb is None:
            return False
        stats = os.statvfs(self.root)
        return stats.f_bavail == 0 or stats.f_favail == 0

    def _read_until(self, proc: subprocess.Popen, deadline: float) -> tuple[bytes, bytes, bool]:
        """Read output until EOF (True) or the deadline (False), keeping at most the cap and
        the last ``_TAIL_BYTES`` of what came past it."""
        chunks: list[bytes] = []
        kept = 0
        tail = b""
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return b"".join(chunks), tail, False
                if not selector.select(remaining):
                    continue
                data = os.read(fd, 65536)
                if not data:
                    return b"".join(chunks), tail, True
                room = self.max_output_bytes - kept
                if room > 0:
                    chunks.append(data[:room])
                    kept += len(chunks[-1])
                if len(data) > room:  # past the cap: drain, keep only a tail
                    tail = (tail + data[max(room, 0) :])[-_TAIL_BYTES:]


def _tmpfs(size_mb: int | None, path: str) -> list[str]:
    size = [] if size_mb is None else ["--size", str(size_mb << 20)]
    return [*size, "--tmpfs", path]


def _require_reachable(root: Path, uid: int) -> None:
    """bubblewrap, running as ``uid``, must be able to walk down to ``root``."""
    for folder in root.resolve().parents:
        st = folder.stat()
        if st.st_uid == uid:
            allowed = st.st_mode & stat.S_IXUSR
        elif st.st_gid == uid:
            allowed = st.st_mode & stat.S_IXGRP
        else:
            allowed = st.st_mode & stat.S_IXOTH
        if not allowed:
            raise SandboxUnavailable(
                f"the sandbox runs as uid {uid}, which cannot reach {root}: {folder} is not "
                "searchable by it (chmod o+x it, or put the scratch folders elsewhere: "
                "scratch_dir)"
            )


def _hand_over(root: Path, uid: int) -> None:
    os.chown(root, uid, uid)
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(folder, name), uid, uid)


def _wait(proc: subprocess.Popen, deadline: float) -> bool:
    try:
        proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
    except subprocess.TimeoutExpired:
        return False
    return True


def _kill(proc: subprocess.Popen, info_read: int) -> None:
    """Kill the sandbox's pid 1, so that its namespace is empty when bubblewrap returns;
    then bubblewrap itself, should it still be there."""
    child = _child_pid(info_read)
    if child is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _child_pid(info_read: int) -> int | None:
    """The host pid of the sandbox's pid 1, from bubblewrap's ``--info-fd`` (None when
    bubblewrap has not got that far)."""
    flags = fcntl.fcntl(info_read, fcntl.F_GETFL)
    fcntl.fcntl(info_read, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    try:
        info = json.loads(os.read(info_read, 65536) or b"{}")
    except (BlockingIOError, ValueError):
        return None
    return info.get("child-pid")
