"""The ScienceWorld env: one simulator per episode."""

from __future__ import annotations

import importlib.util
import shutil
from typing import Any

from agentray.envs.base import Env, action_or_invalid
from agentray.envs.generate import split_tasks
from agentray.envs.scienceworld.config import INSTALL_HINT, ScienceWorldConfig
from agentray.envs.scienceworld.prompt import INSTRUCTION, OK_REPLY
from agentray.envs.scienceworld.simulators import SIMULATORS
from agentray.envs.scienceworld.tasks import (
    _built,
    _load,
    demonstration,
    parse_action,
    problem_text,
    tasks_by_split,
)
from agentray.types import Message, Status, StepResult, TaskSpec


class ScienceWorldEnv(Env[ScienceWorldConfig]):
    name = "scienceworld"
    reference_name = "sciworld"

    _simulator: Any = None
    _score: int = 0

    @classmethod
    def unavailable(cls) -> str | None:
        if importlib.util.find_spec("scienceworld") is None:
            return INSTALL_HINT
        return None if shutil.which("java") else f"no java on PATH; {INSTALL_HINT}"

    def _built(self) -> dict[str, Any]:
        return _built(self.config.model_dump_json())

    def tasks(self, split: str) -> list[TaskSpec]:
        return split_tasks(tasks_by_split(self._built()), split)

    def prompt(self, task: TaskSpec) -> list[Message]:
        messages: list[Message] = [
            {"role": "user", "content": INSTRUCTION},
            {"role": "assistant", "content": OK_REPLY, "loss": False},
        ]
        if self.config.one_shot:
            messages += demonstration(self._built()["demos"][task.payload["task_type"]])
        messages.append({"role": "user", "content": problem_text(task.payload)})
        return messages

    def start(self, task: TaskSpec) -> None:
        """Borrow a simulator (or keep this env's) and load the task's variation."""
        if self._simulator is None:
            self._simulator = SIMULATORS.acquire(self.config.jvm_options)
        p = task.payload
        _load(self._simulator, p["task_type"], p["variation"], p["simplifications"], gold=False)
        self._score = 0

    @staticmethod
    def action_problem(reply: str) -> str | None:
        return "no `Action:` line" if parse_action(reply) is None else None

    def parse(self, reply: str) -> str:
        return action_or_invalid(parse_action(reply), "no Action")

    def act(self, action: str) -> StepResult:
        command = action
        try:
            observation = self._simulator.server.step(command)
            self._score = round(100 * self._simulator.server.getScore())
            completed = bool(self._simulator.server.getCompleted())
        except Exception as e:  # the JVM died or py4j lost it: this simulator is gone
            SIMULATORS.discard(self._simulator)
            self._simulator = None
            return self._finish(Status.TASK_ERROR, 0.0, None, {"error": f"simulator: {e}"})
        info = {"command": command, "score": self._score}
        if completed or self._score >= 100 or self._score < 0:
            return self._finish(Status.COMPLETED, self._reward(), observation, info)
        return StepResult(observation=observation, done=False, reward=0.0, info=info)

    def limit(self, result: StepResult) -> StepResult:
        """ScienceWorld's metric is the score: the limit keeps the partial credit reached."""
        return self._finish(
            Status.TASK_LIMIT_REACHED, self._reward(), result.observation, result.info
        )

    def _reward(self) -> float:
        return max(self._score, 0) / 100

    def stop(self) -> None:
        if self._simulator is not None:
            SIMULATORS.release(self._simulator)
            self._simulator = None

    def expert_actions(self, task: TaskSpec) -> list[str]:
        return [f"Action: {command}" for command in task.payload["gold"]]
