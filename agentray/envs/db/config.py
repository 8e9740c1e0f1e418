"""The DB family's settings."""

from __future__ import annotations

from agentray.envs.base import FamilyConfig
from agentray.envs.task_files import task_files_field

MODIFYING = ("INSERT", "UPDATE", "DELETE")


class DBConfig(FamilyConfig):
    max_rounds: int = 15
    query_timeout_s: float = 2.0
    min_rows: int = 8
    max_rows: int = 18
    max_observation_chars: int = 800
    one_shot: bool = True  # False: AgentBench's exact opening (instruction, "Ok.", question)
    task_files: list[str] = task_files_field()
