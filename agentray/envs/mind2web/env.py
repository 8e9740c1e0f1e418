"""The Mind2Web env: teacher-forced along the gold steps."""

from __future__ import annotations

from typing import Any

from agentray.envs.base import Env
from agentray.envs.generate import split_tasks
from agentray.envs.mind2web.config import Mind2WebConfig
from agentray.envs.mind2web.demo import demonstration
from agentray.envs.mind2web.prompt import INSTRUCTION, gold_reply, problem_text, step_prompt
from agentray.envs.mind2web.score import parse_reply, score_step
from agentray.envs.mind2web.tasks import all_tasks
from agentray.types import Message, Status, StepResult, TaskSpec


class Mind2WebEnv(Env[Mind2WebConfig]):
    name = "mind2web"
    metric_label = "step success rate (%)"
    keep_threshold = 2 / 3  # the paper keeps r >= 2/3 on Mind2Web

    def __init__(self, config: Mind2WebConfig | None = None) -> None:
        super().__init__(config)
        self._scores: list[dict[str, Any]] = []
        self._streak = 0

    def tasks(self, split: str) -> list[TaskSpec]:
        generation = self.config.model_dump(
            include={"n_train", "n_test", "seed", "n_candidates", "min_steps", "max_steps"}
        )
        key = Mind2WebConfig(**generation).model_dump_json()
        return split_tasks(all_tasks(key), split)

    def prompt(self, task: TaskSpec) -> list[Message]:
        messages: list[Message] = [
            {"role": "user", "content": INSTRUCTION},
            {"role": "assistant", "content": "Ok.", "loss": False},
        ]
        messages += [dict(m) for m in demonstration()[: 2 * self.config.n_shots]]  # type: ignore[misc]
        messages.append({"role": "user", "content": problem_text(task.payload)})
        return messages

    def start(self, task: TaskSpec) -> None:
        self._scores = []
        self._streak = 0

    @staticmethod
    def action_problem(reply: str) -> str | None:
        letter, action = parse_reply(reply)
        if letter is None:
            return "no `Answer:` letter"
        if letter != "A" and not action:
            return "an element is chosen but there is no `Action:`"
        return None

    def act(self, action: str) -> StepResult:
        """Teacher-forced along the gold steps: every reply is scored against the next gold
        step, a bad one too; ``max_invalid_streak`` unparsable replies in a row end it."""
        steps = self._task.payload["steps"]
        score = score_step(action, steps[len(self._scores)])
        self._scores.append(score)
        self._streak = 0 if score["parsed"] else self._streak + 1
        k = len(self._scores)
        if k == len(steps):
            return self._finish_episode(Status.COMPLETED, score)
        limit = self.config.max_invalid_streak
        if limit and self._streak >= limit:
            return self._finish_episode(Status.AGENT_INVALID_ACTION, score)
        observation = step_prompt(self._task.payload, k, self.config.previous_k)
        return StepResult(observation=observation, done=False, info={"step": score})

    def limit(self, result: StepResult) -> StepResult:
        return self._finish_episode(Status.TASK_LIMIT_REACHED, result.info["step"])

    def _finish_episode(self, status: Status, last: dict[str, Any]) -> StepResult:
        """Reward = step success rate over all gold steps (unplayed ones count as failed)."""
        n = len(self._task.payload["steps"])
        info = {
            "step": last,
            "steps": n,
            "scored": len(self._scores),
            "element_acc": sum(s["element_correct"] for s in self._scores) / n,
            "action_f1": sum(s["op_f1"] for s in self._scores) / n,
            "step_sr": sum(s["success"] for s in self._scores) / n,
        }
        return self._finish(status, info["step_sr"], None, info)

    def expert_actions(self, task: TaskSpec) -> list[str]:
        return [gold_reply(step) for step in task.payload["steps"]]
