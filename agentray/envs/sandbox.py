"""A bubblewrap sandbox for the OS family: one ``bwrap`` invocation per command.

Every command runs with ``--unshare-all`` (own network, pid, ipc, uts, user and mount
namespaces: no network but ``lo``), all capabilities dropped, the host's ``/usr`` (and the
``/bin``, ``/lib``... links into it) plus a few harmless ``/etc`` files bound read-only, a
fresh ``/proc``, ``/dev`` and ``/tmp``, and the episode's scratch directory bound read-write
as the home/working directory. State persists across an episode's commands because they all
bind the same scratch directory.

A command is killed with its whole process tree when it exceeds ``timeout_s``: the outer
``bwrap`` is SIGKILLed, ``--die-with-parent`` takes its pid-1 child down and the kernel then
kills everything left in the sandbox's pid namespace. When a command ends normally, the
namespace's init exits with it, so background children (``sleep 100 &``) die too.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

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


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces on this host."""


@dataclass(frozen=True)
class CommandResult:
    output: str  # stdout and stderr interleaved, as a terminal would show them
    exit_code: int  # -9 (SIGKILL) when the command was killed for running too long
    timed_out: bool


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


class Sandbox:
    """Runs shell commands over one scratch directory, each in a fresh bubblewrap sandbox."""

    def __init__(
        self,
        root: Path | str,
        timeout_s: float = 5.0,
        workdir: str = "/root",
        max_output_bytes: int = 1 << 20,
        max_file_mb: int = 64,
        max_memory_mb: int = 2048,
    ) -> None:
        self.root = Path(root)
        self.timeout_s = timeout_s
        self.workdir = workdir
        self.max_output_bytes = max_output_bytes
        self.max_file_mb = max_file_mb
        self.max_memory_mb = max_memory_mb

    def argv(self, command: str, args: tuple[str, ...] | list[str] = ()) -> list[str]:
        """The full ``bwrap`` command line that runs ``bash -c command`` with ``args`` as $1..."""
        return [
            *_system_binds(),
            "--unshare-all",
            "--die-with-parent",
            "--new-session",
            "--cap-drop",
            "ALL",
            "--hostname",
            "sandbox",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--tmpfs",
            "/tmp",
            "--bind",
            str(self.root.resolve()),
            self.workdir,
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
            *self._limits(),
            "bash",
            "-c",
            command,
            "bash",
            *args,
        ]

    def _limits(self) -> list[str]:
        # Hard limits (caps are dropped, so the command cannot raise them): a runaway
        # `yes > f` cannot fill the host's disk, nor one process its memory.
        if shutil.which("prlimit") is None:
            return []
        fsize = self.max_file_mb << 20
        memory = self.max_memory_mb << 20
        return ["prlimit", f"--fsize={fsize}", f"--as={memory}", "--"]

    def run(self, command: str, args: tuple[str, ...] | list[str] = ()) -> CommandResult:
        """Run ``command`` with bash; never raises for the command's own failures."""
        if not self.root.is_dir():
            raise SandboxUnavailable(f"sandbox root {self.root} does not exist")
        proc = subprocess.Popen(
            self.argv(command, args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as one on timeout
        )
        deadline = time.monotonic() + self.timeout_s
        try:
            output, finished = self._read_until(proc, deadline)
            if finished:
                finished = _wait(proc, deadline)
        finally:
            if proc.poll() is None:
                _kill(proc)
            proc.stdout.close()
        text = output.decode("utf-8", errors="replace")
        return CommandResult(output=text, exit_code=proc.returncode, timed_out=not finished)

    def _read_until(self, proc: subprocess.Popen, deadline: float) -> tuple[bytes, bool]:
        """Read output until EOF (True) or the deadline (False), keeping at most the cap."""
        chunks: list[bytes] = []
        kept = 0
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return b"".join(chunks), False
                if not selector.select(remaining):
                    continue
                data = os.read(fd, 65536)
                if not data:
                    return b"".join(chunks), True
                if kept < self.max_output_bytes:  # past the cap: drain, drop
                    chunks.append(data[: self.max_output_bytes - kept])
                    kept += len(chunks[-1])


def _wait(proc: subprocess.Popen, deadline: float) -> bool:
    try:
        proc.wait(timeout=max(deadline - time.monotonic(), 0.0))
    except subprocess.TimeoutExpired:
        return False
    return True


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
