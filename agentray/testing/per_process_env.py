"""A test-only env family whose tasks depend on the process that builds them.

``PerProcessDBEnv`` is the DB family with one twist: ``tasks()`` seeds its generator from
``os.getpid()``, so every process draws different tasks. A policy that rebuilt the tasks in
its own process (the old text lookup of the expert) would find none of the driver's; one
that plays the task shipped with its episode solves every one. Use it by its import path,
which the family registry accepts as a family name::

    collect: {families: ["agentray.testing.per_process_env:PerProcessDBEnv"]}
"""

from __future__ import annotations

import os
from typing import ClassVar

from agentray.envs.db import DBEnv
from agentray.types import TaskSpec

NAME = "agentray.testing.per_process_env:PerProcessDBEnv"


class PerProcessDBEnv(DBEnv):
    name: ClassVar[str] = NAME

    def tasks(self, split: str) -> list[TaskSpec]:
        per_process = DBEnv(self.config.model_copy(update={"seed": os.getpid()}))
        return [t.model_copy(update={"family": NAME}) for t in per_process.tasks(split)]
