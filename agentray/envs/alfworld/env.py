"""The ALFWorld env: one household world per episode."""

from __future__ import annotations

from agentray.envs.alfworld.config import AlfWorldConfig
from agentray.envs.alfworld.expert import expert_plan, format_reply
from agentray.envs.alfworld.parsing import (
    available_actions,
    parse_action,
    process_ob,
    snap_to_admissible,
)
from agentray.envs.alfworld.prompt import INSTRUCTION, OK_REPLY
from agentray.envs.alfworld.tasks import all_tasks, demonstration, problem_text
from agentray.envs.alfworld.world import World
from agentray.envs.base import Env, action_or_invalid
from agentray.envs.generate import split_tasks
from agentray.types import Message, Status, StepResult, TaskSpec


class AlfWorldEnv(Env[AlfWorldConfig]):
    name = "alfworld"
    metric_label = "success rate (%)"

    def __init__(self, config: AlfWorldConfig | None = None) -> None:
        super().__init__(config)
        self._world: World | None = None
        self._replies: list[str] = []

    def tasks(self, split: str) -> list[TaskSpec]:
        return split_tasks(all_tasks(self.config.model_dump_json()), split)

    def prompt(self, task: TaskSpec) -> list[Message]:
        messages: list[Message] = [
            {"role": "user", "content": INSTRUCTION},
            {"role": "assistant", "content": OK_REPLY, "loss": False},
        ]
        if self.config.one_shot:
            messages += [dict(m) for m in demonstration(task.payload["task_type"])]  # type: ignore[misc]
        problem = problem_text(task.payload)
        if self.config.show_available_actions:
            problem += available_actions(World(task.payload).admissible())
        messages.append({"role": "user", "content": problem})
        return messages

    def start(self, task: TaskSpec) -> None:
        self._world = World(task.payload)
        self._replies = []

    @staticmethod
    def action_problem(reply: str) -> str | None:
        return "no `ACTION:` line" if parse_action(reply) is None else None

    def parse(self, reply: str) -> tuple[str, str]:
        """The command of the ``ACTION:`` line, with the reply (repeats are counted on it)."""
        return action_or_invalid(parse_action(reply), "no ACTION"), reply

    def act(self, action: tuple[str, str]) -> StepResult:
        """AgentBench's ALFWorld: a command snaps to the closest admissible one; the same
        reply three times in a row fails the episode."""
        command, reply = action
        world = self._world
        if self.config.fuzzy_match:
            command = snap_to_admissible(command, world.admissible())
        observation = process_ob(world.execute(command))
        if self.config.show_available_actions:
            observation += available_actions(world.admissible())
        info = {"command": command}
        self._replies.append(reply)
        last = self._replies[-3:]
        if self.config.fail_on_repeat and len(self._replies) > 3 and last.count(last[0]) == 3:
            info["error"] = "the same reply three times in a row"
            return self._finish(Status.AGENT_INVALID_ACTION, 0.0, observation, info)
        if world.won():
            return self._finish(Status.COMPLETED, 1.0, observation, info)
        return StepResult(observation=observation, done=False, info=info)

    def stop(self) -> None:
        self._world = None

    def expert_actions(self, task: TaskSpec) -> list[str]:
        return [format_reply(command, thought) for command, thought in expert_plan(task.payload)]
