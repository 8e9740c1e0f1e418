"""The MiniWoB++ env: one browser per episode."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from typing import Any

from agentray.envs.base import Env, action_or_invalid
from agentray.envs.generate import split_tasks
from agentray.envs.miniwob.actions import format_action, parse_action
from agentray.envs.miniwob.browsers import BROWSERS
from agentray.envs.miniwob.config import INSTALL_HINT, MiniWoBConfig
from agentray.envs.miniwob.pages import _elements
from agentray.envs.miniwob.prompt import INSTRUCTION, OK_REPLY
from agentray.envs.miniwob.tasks import _act, _built, demonstration, problem_key, tasks_by_split
from agentray.types import Message, Status, StepResult, TaskSpec


class MiniWoBEnv(Env[MiniWoBConfig]):
    name = "miniwob"
    reference_name = "miniwob++"

    def __init__(self, config: MiniWoBConfig | None = None) -> None:
        super().__init__(config)
        self._browser: Any = None
        self._refs: set[int] = set()

    @classmethod
    def unavailable(cls) -> str | None:
        if importlib.util.find_spec("miniwob") is None:
            return INSTALL_HINT
        if os.environ.get("MINIWOB_CHROME_BINARY") or (
            shutil.which("chromium") and shutil.which("chromedriver")
        ):
            return None
        return f"no chromium / chromedriver on PATH; {INSTALL_HINT}"

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
            messages += demonstration(self._built()["demos"][task.payload["subdomain"]])
        messages.append(
            {"role": "user", "content": "Here is your task.\n" + problem_key(task.payload)}
        )
        return messages

    def start(self, task: TaskSpec) -> None:
        self.close()
        limit_ms = int(self.config.episode_time_limit_s * 1000)
        self._browser = BROWSERS.acquire(task.payload["subdomain"], limit_ms)
        observation, _ = self._browser.reset(seed=task.payload["seed"])
        self._refs = {e["ref"] for e in _elements(observation)}

    @staticmethod
    def action_problem(reply: str) -> str | None:
        if parse_action(reply) is None:
            return 'no `Action: click(<ref>)` or `Action: type(<ref>, "<text>")` line'
        return None

    def parse(self, reply: str) -> tuple[str, int, str | None]:
        return action_or_invalid(parse_action(reply), "no action")

    def act(self, action: tuple[str, int, str | None]) -> StepResult:
        kind, ref, text = action
        info: dict[str, Any] = {"action": f"{kind}({ref})"}
        if ref not in self._refs:
            return StepResult(observation=f"There is no element [{ref}].", done=False, info=info)
        try:
            observation, raw_reward, done = _act(self._browser, kind, ref, text)
        except Exception as e:  # the browser died: it is gone, the episode with it
            BROWSERS.discard(self._browser)
            self._browser = None
            return self._finish(Status.TASK_ERROR, 0.0, None, {"error": f"browser: {e}"})
        if done:
            info["raw_reward"] = raw_reward
            reward = 1.0 if raw_reward > 0 else 0.0
            return self._finish(
                Status.COMPLETED, reward, f"The episode ended (reward {reward}).", info
            )
        self._refs = {int(r) for r in re.findall(r"^\s*\[(-?\d+)\]", observation, re.MULTILINE)}
        return StepResult(observation=observation, done=False, info=info)

    def stop(self) -> None:
        if self._browser is not None:
            BROWSERS.release(self._browser)
            self._browser = None

    def expert_actions(self, task: TaskSpec) -> list[str]:
        return [format_action(kind, ref, text) for kind, ref, text in task.payload["plan"]]
