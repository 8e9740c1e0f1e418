"""The scripted expert: a plan of commands that reaches the goal."""

from __future__ import annotations

from typing import Any

from agentray.envs.alfworld.prompt import NOTHING_HAPPENS
from agentray.envs.alfworld.scenes import (
    LAMP_PLACES,
    PROCESS,
    SCENES,
    _number,
    display_key,
    kind_of,
)
from agentray.envs.alfworld.world import World


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


class _Planner:
    """Plays the expert on a private copy of the world; it only uses what it has seen."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.p = payload
        self.world = World(payload)
        self.steps: list[tuple[str, str | None]] = []  # (command, thought)
        self.seen: list[str] = []  # receptacles whose contents it has seen, in order

    def act(self, command: str, thought: str | None = None) -> None:
        if self.world.execute(command) == NOTHING_HAPPENS:
            raise RuntimeError(f"expert command is not admissible: {command}")
        self.steps.append((command, thought))
        at = self.world.at
        if at is not None and self.world.receptacles[at].visible and at not in self.seen:
            self.seen.append(at)

    def reach(self, name: str, thought: str | None = None) -> None:
        """Go to ``name`` and open it if it is closed."""
        if self.world.at != name:
            self.act(f"go to {name}", thought)
            thought = None
        if not self.world.receptacles[name].visible:
            self.act(f"open {name}", thought)

    def _kind_in(self, name: str, kind: str) -> list[str]:
        contents = sorted(self.world.receptacles[name].contents, key=display_key)
        return [n for n in contents if kind_of(n) == kind]

    def search_order(self, kind: str, places: tuple[str, ...], avoid: str | None) -> list[str]:
        rank = {k: i for i, k in enumerate(places)}
        names = [n for n in self.world.receptacles if kind_of(n) != avoid]
        return sorted(
            names, key=lambda n: (rank.get(kind_of(n), len(rank)), kind_of(n), _number(n))
        )

    def find(self, kind: str, places: tuple[str, ...], avoid: str | None, thought: str) -> str:
        """Reach a receptacle holding a ``kind`` (known ones first); return its name."""
        for name in self.seen:
            if kind_of(name) != avoid and self._kind_in(name, kind):
                self.reach(name, thought)
                return name
        for name in self.search_order(kind, places, avoid):
            if name in self.seen:
                continue
            self.reach(name, thought)
            thought = None
            if self._kind_in(name, kind):
                return name
        raise RuntimeError(f"no {kind} anywhere")

    def fetch(self, places: tuple[str, ...], thought: str) -> str:
        kind, avoid = self.p["object"], self.p["target"]
        where = self.find(kind, places, avoid, thought)
        name = self._kind_in(where, kind)[0]
        self.act(
            f"take {name} from {where}",
            f"There is {_article(kind)} {kind} here: {name}. I take it.",
        )
        return name

    def first_of(self, kind: str) -> str:
        return min((n for n in self.world.receptacles if kind_of(n) == kind), key=_number)

    def run(self) -> list[tuple[str, str | None]]:
        p = self.p
        kind, task_type = p["object"], p["task_type"]
        places = _object_places(p)
        present = {kind_of(n) for n in self.world.receptacles}
        where = ", ".join(k for k in places if k != p["target"] and k in present)
        a_kind = f"{_article(kind)} {kind}"
        name = self.fetch(
            places,
            f"The task is to {p['goal']} First I need to find {a_kind}. "
            f"{a_kind.capitalize()} is more likely to be in/on: {where}. "
            "I will check them one by one.",
        )
        if task_type in PROCESS:
            verb, appliance, _ = PROCESS[task_type]
            device = self.first_of(appliance)
            if self.world.at != device:
                self.act(f"go to {device}", f"Now I {verb} the {name} with the {device}.")
            self.act(f"{verb} {name} with {device}")
        if task_type == "look_at_obj_in_light":
            lamp = p["lamp"]
            self.find(lamp, LAMP_PLACES, None, f"Now I need to find the {lamp}.")
            here = self._kind_in(self.world.at, lamp)[0]
            self.act(f"use {here}", f"I hold the {name} next to the {lamp}; I turn it on.")
            return self.steps
        self.place(name)
        if task_type == "pick_two_obj_and_place":
            second = self.fetch(places, f"One {kind} is placed. Now I need to find another {kind}.")
            self.place(second)
        return self.steps

    def place(self, name: str) -> None:
        dest = self.first_of(self.p["target"])
        self.reach(dest, f"Now I put the {name} in/on the {dest}.")
        self.act(f"put {name} in/on {dest}")


def _object_places(payload: dict[str, Any]) -> tuple[str, ...]:
    return SCENES[payload["scene"]].objects[payload["object"]]


def expert_plan(payload: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The expert's (command, thought) steps for a task."""
    return _Planner(payload).run()


def format_reply(command: str, thought: str | None) -> str:
    return f"THOUGHT: {thought}\n ACTION: {command}" if thought else f"ACTION: {command}"
