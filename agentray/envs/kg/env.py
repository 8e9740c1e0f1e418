"""The KG env: tool calls over the graph until a final answer."""

from __future__ import annotations

from typing import Any

from agentray.envs.base import Env
from agentray.envs.generate import split_tasks
from agentray.envs.kg.build import graph_for
from agentray.envs.kg.config import KGConfig
from agentray.envs.kg.graph import KnowledgeGraph
from agentray.envs.kg.prompt import ACKNOWLEDGEMENT, INSTRUCTIONS, INVALID_VARIABLE, ONE_SHOT
from agentray.envs.kg.score import f1_score
from agentray.envs.kg.tasks import all_tasks, problem_text
from agentray.envs.kg.tools import (
    Episode,
    Variable,
    call_problem,
    clean_reply,
    final_answer_id,
    run_action,
)
from agentray.types import Message, Status, StepResult, TaskSpec


class KGEnv(Env[KGConfig]):
    name = "kg"
    metric_label = "answer F1 (%)"

    _episode: Episode | None = None
    _invalid: int = 0

    @property
    def graph(self) -> KnowledgeGraph:
        return graph_for(self.config)

    def tasks(self, split: str) -> list[TaskSpec]:
        return split_tasks(all_tasks(self.config.model_dump_json()), split)

    def prompt(self, task: TaskSpec) -> list[Message]:
        messages: list[Message] = [
            {"role": "user", "content": INSTRUCTIONS},
            {"role": "assistant", "content": ACKNOWLEDGEMENT, "loss": False},
        ]
        if self.config.one_shot:
            for i, shot in enumerate(ONE_SHOT):
                if i % 2 == 0:
                    messages.append({"role": "user", "content": shot})
                else:
                    messages.append({"role": "assistant", "content": shot, "loss": False})
        messages.append({"role": "user", "content": problem_text(task.payload)})
        return messages

    def start(self, task: TaskSpec) -> None:
        self._episode = Episode(self.graph, task.payload["entities"])
        self._invalid = 0

    @staticmethod
    def action_problem(reply: str) -> str | None:
        text = clean_reply(reply)
        if final_answer_id(text) is not None:
            return None
        return call_problem(text)

    def act(self, action: str) -> StepResult:
        """AgentBench's KG counts an invalid action and goes on (status AGENT_INVALID_ACTION
        on that step, the episode still running)."""
        text = clean_reply(action)
        answer_id = final_answer_id(text)
        if answer_id is not None and answer_id < len(self._episode.variables):
            return self._answer(self._episode.variables[answer_id])
        if answer_id is not None:
            observation, error = INVALID_VARIABLE, "invalid variable id"
        else:
            observation, error = run_action(self._episode, text)
        info: dict[str, Any] = {"variables": len(self._episode.variables)}
        if error is not None:
            self._invalid += 1
            info["error"] = error
        info["invalid_actions"] = self._invalid
        status = Status.AGENT_INVALID_ACTION if error is not None else Status.RUNNING
        return StepResult(observation=observation, done=False, status=status, info=info)

    def limit(self, result: StepResult) -> StepResult:
        result.info.update(f1=0.0, exact_match=False)
        return self._finish(Status.TASK_LIMIT_REACHED, 0.0, result.observation, result.info)

    def _answer(self, variable: Variable) -> StepResult:
        predicted = {str(variable.number)} if variable.number is not None else set(variable.members)
        gold = set(self._task.payload["answer"])
        f1 = f1_score(predicted, gold)
        info = {
            "f1": f1,
            "exact_match": predicted == gold,
            "predicted": sorted(predicted),
            "gold": sorted(gold),
            "invalid_actions": self._invalid,
            "variables": len(self._episode.variables),
        }
        return self._finish(Status.COMPLETED, f1, None, info)

    def _finish(
        self, status: Status, reward: float, observation: str | None, info: dict
    ) -> StepResult:
        self._episode = None
        return super()._finish(status, reward, observation, info)

    def stop(self) -> None:
        self._episode = None

    def expert_actions(self, task: TaskSpec) -> list[str]:
        return list(task.payload["actions"])
