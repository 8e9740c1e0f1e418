"""A TextWorld-style game: find the key in one room, open the chest in another.

Actions are ``Action: go <room>``, ``Action: take key`` and ``Action: open chest``; the
episode is won when the chest opens (reward 1)."""

from __future__ import annotations

import re
from typing import Any

from agentray.envs.base import Env, FamilyConfig, InvalidAction
from agentray.envs.generate import generate_split_tasks, split_tasks
from agentray.types import Message, Status, StepResult, TaskSpec

ROOMS = ["kitchen", "cellar", "attic", "library", "garden", "hall", "study", "pantry"]
ACTION = re.compile(r"Action:\s*(go \w+|take key|open chest)\s*$", re.M | re.I)
INSTRUCTION = (
    "You are in a house. Find the key and open the chest. Each turn, think, then give one "
    "action on its own line: `Action: go <room>`, `Action: take key` or `Action: open chest`."
)


class TreasureConfig(FamilyConfig):
    """How many rooms a house has."""

    rooms: int = 4
    max_rounds: int = 8


def _house(rng: Any, rooms: int) -> dict[str, Any]:
    names = rng.sample(ROOMS, rooms)
    return {"rooms": names, "start": names[0], "key": rng.choice(names), "chest": names[-1]}


def problem_text(payload: dict[str, Any]) -> str:
    return (
        f"You are in the {payload['start']}. The house has: {', '.join(payload['rooms'])}. "
        f"The chest is in the {payload['chest']}."
    )


def walkthrough(house: dict[str, Any]) -> list[str]:
    """The replies that win ``house`` from its start: to the key, take it, to the chest."""
    steps = []
    if house["key"] != house["start"]:
        steps.append(f"The key is in the {house['key']}.\nAction: go {house['key']}")
    steps.append("Take it.\nAction: take key")
    if house["chest"] != house["key"]:
        steps.append(f"Now the chest.\nAction: go {house['chest']}")
    steps.append("Open it.\nAction: open chest")
    return steps


class TreasureEnv(Env[TreasureConfig]):
    name = "treasure"
    metric_label = "success rate (%)"

    def tasks(self, split: str) -> list[TaskSpec]:
        generated = generate_split_tasks(
            self.name, self.config, lambda rng: _house(rng, self.config.rooms), problem_text
        )
        return split_tasks(generated, split)

    def prompt(self, task: TaskSpec) -> list[Message]:
        demo = {"rooms": ["hall", "attic"], "start": "hall", "key": "hall", "chest": "attic"}
        return [
            {"role": "user", "content": f"{INSTRUCTION}\n\n{problem_text(demo)}"},
            {
                "role": "assistant",
                "content": "The key may be here.\nAction: take key",
                "loss": False,
            },
            {"role": "user", "content": "You take the key."},
            {"role": "assistant", "content": "To the chest.\nAction: go attic", "loss": False},
            {"role": "user", "content": "You are in the attic. There is a chest."},
            {"role": "assistant", "content": "Open it.\nAction: open chest", "loss": False},
            {
                "role": "user",
                "content": f"The chest opens. Well done.\n\n{problem_text(task.payload)}",
            },
        ]

    def expert_actions(self, task: TaskSpec) -> list[str]:
        return walkthrough(task.payload)

    def start(self, task: TaskSpec) -> None:
        self._house = task.payload
        self._room = task.payload["start"]
        self._has_key = False

    def parse(self, reply: str) -> str:
        matches = ACTION.findall(reply)
        if not matches:
            raise InvalidAction("no `Action: ...` line")
        return matches[-1].lower()

    def act(self, action: str) -> StepResult:
        if action.startswith("go "):
            room = action[3:]
            if room not in self._house["rooms"]:
                return StepResult(observation=f"There is no {room} here.", done=False)
            self._room = room
            return StepResult(observation=f"You are in the {room}.", done=False)
        if action == "take key":
            if self._room != self._house["key"] or self._has_key:
                return StepResult(observation="There is no key here.", done=False)
            self._has_key = True
            return StepResult(observation="You take the key.", done=False)
        if self._room != self._house["chest"]:
            return StepResult(observation="There is no chest here.", done=False)
        if not self._has_key:
            return StepResult(observation="The chest is locked.", done=False)
        return self._finish(Status.COMPLETED, 1.0, None, {})

    def stop(self) -> None:
        self._house = {}
