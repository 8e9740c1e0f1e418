"""The DB env: one SQLite episode per task."""

from __future__ import annotations

import json

from agentray.envs.base import Env, action_or_invalid
from agentray.envs.db.config import MODIFYING, DBConfig
from agentray.envs.db.database import GuardedDatabase
from agentray.envs.db.prompt import DEMO, INSTRUCTION
from agentray.envs.db.score import answers_match, parse_action, parse_answer
from agentray.envs.db.tasks import all_tasks, problem_text
from agentray.envs.generate import split_tasks
from agentray.envs.task_files import file_tasks
from agentray.types import Message, Status, StepResult, TaskSpec


class DBEnv(Env[DBConfig]):
    name = "db"
    metric_label = "success rate (%)"

    _db: GuardedDatabase | None = None

    def tasks(self, split: str) -> list[TaskSpec]:
        generated = all_tasks(self.config.model_dump_json(exclude={"task_files"}))
        return split_tasks(generated, split) + file_tasks(self.name, self.config.task_files, split)

    def prompt(self, task: TaskSpec) -> list[Message]:
        messages: list[Message] = [
            {"role": "user", "content": INSTRUCTION},
            {"role": "assistant", "content": "Ok.", "loss": False},
        ]
        if self.config.one_shot:
            messages += [dict(m) for m in DEMO]  # type: ignore[misc]
        messages.append({"role": "user", "content": problem_text(task.payload)})
        return messages

    def start(self, task: TaskSpec) -> None:
        self.close()
        self._db = GuardedDatabase(task.payload, self.config.query_timeout_s)

    @staticmethod
    def action_problem(reply: str) -> str | None:
        if parse_action(reply) is None:
            return "no `Action: Operation` with a ```sql block and no `Final Answer:`"
        return None

    def parse(self, reply: str) -> tuple[str, str]:
        return action_or_invalid(parse_action(reply), "no valid action")

    def act(self, action: tuple[str, str]) -> StepResult:
        kind, content = action
        if kind == "answer":
            correct = self._score(content)
            return self._finish(
                Status.COMPLETED, float(correct), None, {"answer": content, "correct": correct}
            )
        observation = self._db.execute(content, self.config.max_observation_chars)
        return StepResult(observation=observation, done=False)

    def _score(self, raw_answer: str) -> bool:
        payload = self._task.payload
        if payload["type"] in MODIFYING:
            columns = [name for name, _ in payload["columns"]]
            return self._db.table_hash(payload["table"], columns) == payload["answer_hash"]
        return answers_match(parse_answer(raw_answer), payload["answer"])

    def stop(self) -> None:
        if self._db is not None:
            self._db.close()
        self._db = None

    def expert_actions(self, task: TaskSpec) -> list[str]:
        payload = task.payload
        operation = f"{payload['thought']}\nAction: Operation\n```sql\n{payload['sql']}\n```"
        if payload["type"] in MODIFYING:
            answer = (
                f"The {payload['type']} statement has been executed, so the table is updated.\n"
                'Action: Answer\nFinal Answer: ["none"]'
            )
        else:
            answer = (
                "The query result gives the answer.\n"
                f"Action: Answer\nFinal Answer: {json.dumps(payload['answer'])}"
            )
        return [operation, answer]
