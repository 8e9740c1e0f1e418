"""What one sandboxed command may use, how the limits are set, and how the agent is told.

The per-process limits are resource limits set by bash's ``ulimit`` builtin inside the
sandbox, after bubblewrap has created the command's user namespace and before the command
runs; capabilities are dropped, so the command cannot raise them. No host tool (``prlimit``)
is involved, so a host without one cannot silently lose a limit.

``RLIMIT_NPROC`` is counted per user and user namespace (Linux >= 5.14), so setting it inside
the command's fresh user namespace bounds that command alone, not every sandbox of the same
uid. It does not bind root (uid 0 and CAP_SYS_RESOURCE are exempt), which is why
``Sandbox`` runs bubblewrap as an unprivileged uid when agentray runs as root.

The disk limits are sizes: ``/tmp`` and ``/dev/shm`` are fresh tmpfs mounts of ``tmp_mb``
each, the root and ``/dev`` are read-only, and the scratch folder is the size-limited tmpfs of
``agentray.envs.scratch`` (``scratch_mb``, reported here, enforced there).
"""

from __future__ import annotations

import platform
import re
import signal
from dataclasses import dataclass

# Per-user-namespace RLIMIT_NPROC accounting (ucounts) arrived in Linux 5.14.
MIN_KERNEL_FOR_PROCESSES = (5, 14)

_FORK_FAILED = re.compile(r"Resource temporarily unavailable")
_NO_SPACE = re.compile(r"No space left on device|Disk quota exceeded")
_FILE_TOO_BIG = re.compile(r"File size limit exceeded|File too large")
_NO_MEMORY = re.compile(
    r"Cannot allocate memory|MemoryError|cannot allocate \d+ bytes|bad_alloc|out of memory",
    re.IGNORECASE,
)
_CPU_EXCEEDED = re.compile(r"CPU time limit exceeded")


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one sandboxed command; None switches a limit off (explicitly)."""

    processes: int | None = 128  # processes and threads in the command's sandbox
    memory_mb: int | None = 2048  # address space per process (RLIMIT_AS)
    cpu_s: int | None = 10  # CPU seconds per process: SIGXCPU, SIGKILL one second later
    file_mb: int | None = 64  # largest file a process may write (RLIMIT_FSIZE)
    tmp_mb: int | None = 256  # size of /tmp and of /dev/shm, each a tmpfs
    scratch_mb: int | None = None  # size of the scratch tmpfs (mounted by Scratch)

    def ulimit_script(self) -> str:
        """A bash script that sets the limits and execs ``bash -c "$1" "${@:2}"``.

        Exits 125 with bash's message when a limit cannot be set (e.g. above a hard limit
        the host already imposes): a command never runs with a limit missing."""
        # bash counts -v and -f in KiB; -c 0: no core files in the scratch folder.
        flags = ["-c 0"]
        if self.processes is not None:
            flags.append(f"-u {self.processes}")
        if self.memory_mb is not None:
            flags.append(f"-v {self.memory_mb << 10}")
        if self.file_mb is not None:
            flags.append(f"-f {self.file_mb << 10}")
        script = "ulimit " + " ".join(flags)
        if self.cpu_s is not None:  # soft first: SIGXCPU is what bash reports
            script += f" && ulimit -S -t {self.cpu_s} && ulimit -H -t {self.cpu_s + 1}"
        return script + ' || exit 125; exec bash -c "$1" "${@:2}"'

    def notes(self, output: str, exit_code: int, scratch_full: bool, workdir: str) -> list[str]:
        """``[sandbox] ...`` lines naming each limit the command ran into (``scratch_full``:
        it filled the scratch folder, or was refused by a full one)."""
        found = []
        if self.processes is not None and _FORK_FAILED.search(output):
            found.append(f"process limit ({self.processes}) reached")
        if scratch_full:
            found.append(f"disk quota full: {workdir} holds {self.scratch_mb} MiB")
        elif self.tmp_mb is not None and _NO_SPACE.search(output):
            found.append(f"disk quota full: /tmp and /dev/shm hold {self.tmp_mb} MiB each")
        if self.file_mb is not None and (
            exit_code == 128 + signal.SIGXFSZ or _FILE_TOO_BIG.search(output)
        ):
            found.append(f"file size limit ({self.file_mb} MiB) reached")
        if self.memory_mb is not None and _NO_MEMORY.search(output):
            found.append(f"memory limit ({self.memory_mb} MiB per process) reached")
        if self.cpu_s is not None and (
            exit_code == 128 + signal.SIGXCPU or _CPU_EXCEEDED.search(output)
        ):
            found.append(f"CPU time limit ({self.cpu_s} s per process) reached")
        return [f"[sandbox] {note}" for note in found]


def no_space(output: str) -> bool:
    """True when ``output`` shows a write refused for want of space (ENOSPC)."""
    return _NO_SPACE.search(output) is not None


def kernel_counts_processes_per_namespace(release: str | None = None) -> bool:
    """True on Linux >= 5.14, where RLIMIT_NPROC counts per user namespace."""
    numbers = re.match(r"(\d+)\.(\d+)", release or platform.release())
    return numbers is not None and tuple(map(int, numbers.groups())) >= MIN_KERNEL_FOR_PROCESSES
