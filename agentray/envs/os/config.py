"""The OS family's settings."""

from __future__ import annotations

from agentray.envs.base import FamilyConfig
from agentray.envs.task_files import task_files_field


class OSConfig(FamilyConfig):
    max_rounds: int = 8
    command_timeout_s: float = 5.0
    max_output_chars: int = 800
    workdir: str = "/root"  # where the scratch dir appears inside the sandbox
    scratch_dir: str | None = None  # host parent of the per-episode dirs (None: system temp)
    max_file_mb: int = 64
    max_memory_mb: int = 2048
    task_files: list[str] = task_files_field()
