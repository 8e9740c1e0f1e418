"""A test-only env family without a scripted expert: the DB family whose
``expert_actions`` raises. The expert policy cannot play it, and collect must say so at load
instead of ending every episode as task_error. Use it by its import path::

    collect: {families: ["agentray.testing.expertless_env:ExpertlessDBEnv"]}
"""

from __future__ import annotations

from typing import ClassVar

from agentray.envs.db import DBEnv
from agentray.types import TaskSpec

NAME = "agentray.testing.expertless_env:ExpertlessDBEnv"


class ExpertlessDBEnv(DBEnv):
    name: ClassVar[str] = NAME

    def tasks(self, split: str) -> list[TaskSpec]:
        return [t.model_copy(update={"family": NAME}) for t in super().tasks(split)]

    def expert_actions(self, task: TaskSpec) -> list[str]:
        raise NotImplementedError("this family has no scripted expert")
