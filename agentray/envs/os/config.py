"""The OS family's settings, its sandbox's limits among them."""

from __future__ import annotations

from pydantic import Field

from agentray.envs.base import FamilyConfig
from agentray.envs.sandbox import NOBODY
from agentray.envs.sandbox_limits import SandboxLimits
from agentray.envs.task_files import task_files_field

_OFF = " null: no limit"


class OSConfig(FamilyConfig):
    max_rounds: int = Field(8, ge=1, description="agent turns per episode (AgentBench: 8)")
    command_timeout_s: float = Field(
        5.0, gt=0, description="wall time per command; then it and all it started are killed"
    )
    max_output_chars: int = Field(
        800, ge=40, description="command output shown to the agent; the rest is cut (AgentBench)"
    )
    workdir: str = Field(
        "/root", description="where the scratch dir appears inside the sandbox (home and cwd)"
    )
    scratch_dir: str | None = Field(
        None,
        description="host folder of the per-episode scratch dirs (null: the system temp "
        "folder); as root, uid sandbox_uid must be able to search it",
    )
    scratch_mb: int | None = Field(
        256,
        ge=1,
        description="size of an episode's scratch dir (a tmpfs mounted per episode, which "
        "needs root or CAP_SYS_ADMIN: the episode fails to start without);" + _OFF,
    )
    tmp_mb: int | None = Field(
        256, ge=1, description="size of /tmp and of /dev/shm, each a tmpfs per command;" + _OFF
    )
    max_processes: int | None = Field(
        128,
        ge=8,
        description="processes and threads per command (RLIMIT_NPROC in the command's own "
        "user namespace; Linux >= 5.14);" + _OFF,
    )
    max_memory_mb: int | None = Field(
        2048, ge=16, description="address space per process (RLIMIT_AS);" + _OFF
    )
    max_cpu_s: int | None = Field(
        10,
        ge=1,
        description="CPU seconds per process (RLIMIT_CPU: SIGXCPU, SIGKILL a second later);" + _OFF,
    )
    max_file_mb: int | None = Field(
        64, ge=1, description="largest file a process may write (RLIMIT_FSIZE);" + _OFF
    )
    sandbox_uid: int = Field(
        NOBODY,
        ge=1,
        description="host uid the sandbox runs as when agentray runs as root and "
        "max_processes is set (root is exempt from RLIMIT_NPROC); the agent is root inside",
    )
    task_files: list[str] = task_files_field()

    def sandbox_limits(self) -> SandboxLimits:
        """The limits every command of an episode runs under."""
        return SandboxLimits(
            processes=self.max_processes,
            memory_mb=self.max_memory_mb,
            cpu_s=self.max_cpu_s,
            file_mb=self.max_file_mb,
            tmp_mb=self.tmp_mb,
            scratch_mb=self.scratch_mb,
        )
