"""An episode's scratch folder: a fresh host folder, by default a size-limited tmpfs.

The sandbox binds the folder read-write as the agent's home, and state persists across an
episode's commands through it, so its size limit must live on the host: a tmpfs of
``size_mb`` mounted on the folder for the episode (and unmounted after it). Mounting needs
CAP_SYS_ADMIN (agentray running as root on a VM or bare metal, or a container started with
``--cap-add SYS_ADMIN`` or ``--privileged``); where it is refused, the episode does not start
(``SandboxUnavailable`` naming ``scratch_mb``) rather than run without the limit.

A process killed with ``-9`` cannot unmount its folders; their names carry its pid, and the
next process that makes a scratch folder unmounts those of dead pids.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import tempfile
from pathlib import Path

from agentray.envs.sandbox import SandboxUnavailable

SOURCE = "agentray-scratch"  # the mount's source name, how stale mounts are recognised
_PREFIX = "agentray-os-"
_MS_NOSUID, _MS_NODEV, _MNT_DETACH = 2, 4, 2
_libc = ctypes.CDLL(None, use_errno=True)
_swept = False


class Scratch:
    """A fresh folder under ``parent`` (None: the system temp folder), owned by ``uid``,
    mounted as a tmpfs of ``size_mb`` (None: a plain folder, unbounded)."""

    def __init__(self, parent: str | None, size_mb: int | None, uid: int | None = None) -> None:
        _sweep_once()
        self.size_mb = size_mb
        self.path = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=parent))
        self.mounted = False
        if size_mb is None:
            return
        try:
            _mount_tmpfs(self.path, size_mb, os.geteuid() if uid is None else uid)
        except OSError as e:
            self.path.rmdir()
            raise SandboxUnavailable(
                f"the OS scratch quota (scratch_mb={size_mb}) needs a size-limited tmpfs, and "
                f"mounting one failed ({e.strerror}): it needs CAP_SYS_ADMIN (run agentray as "
                "root on a VM, or the container with --cap-add SYS_ADMIN or --privileged); set "
                "scratch_mb: null to run with an unbounded scratch folder"
            ) from e
        self.mounted = True

    def release(self) -> None:
        """Unmount (what the episode wrote goes with it) and remove the folder; idempotent."""
        if self.mounted:
            _unmount(self.path)
            self.mounted = False
        shutil.rmtree(self.path, ignore_errors=True)


def _mount_tmpfs(path: Path, size_mb: int, uid: int) -> None:
    # One inode per 4 KiB page of the quota: a flood of empty files is bounded too.
    options = (
        f"size={size_mb << 20},nr_inodes={max(size_mb << 8, 1024)},mode=0700,uid={uid},gid={uid}"
    )
    done = _libc.mount(
        SOURCE.encode(), os.fsencode(path), b"tmpfs", _MS_NOSUID | _MS_NODEV, options.encode()
    )
    if done != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), str(path))


def _unmount(path: Path) -> None:
    if _libc.umount2(os.fsencode(path), _MNT_DETACH) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno), str(path))


def _sweep_once() -> None:
    """Unmount and remove the scratch mounts of processes that died without doing it."""
    global _swept
    if _swept:
        return
    _swept = True
    for mountpoint in stale_mounts():
        with contextlib.suppress(OSError):
            _unmount(mountpoint)
            shutil.rmtree(mountpoint, ignore_errors=True)


def stale_mounts() -> list[Path]:
    """Scratch mounts (in this mount namespace) whose owning pid is no longer alive."""
    stale = []
    for mountpoint in scratch_mounts():
        found = re.match(rf"{_PREFIX}(\d+)-", mountpoint.name)
        if found and not _alive(int(found.group(1))):
            stale.append(mountpoint)
    return stale


def scratch_mounts() -> list[Path]:
    """Every scratch tmpfs mounted in this mount namespace."""
    mounts = []
    with open("/proc/self/mountinfo") as table:
        for line in table:
            fields, _, tail = line.partition(" - ")
            fstype, source = (tail.split() + ["", ""])[:2]
            if fstype == "tmpfs" and source == SOURCE:
                mounts.append(Path(_unescape(fields.split()[4])))
    return mounts


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
