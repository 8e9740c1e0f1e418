"""A household world: receptacles, things, the commands and their effects."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from agentray.envs.alfworld.prompt import NOTHING_HAPPENS
from agentray.envs.alfworld.scenes import APPLIANCE_VERB, LAMPS, PROCESS, kind_of, listing


@dataclass
class Receptacle:
    name: str
    loc: int
    openable: bool
    is_open: bool
    contents: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return kind_of(self.name)

    @property
    def visible(self) -> bool:
        return self.is_open or not self.openable


@dataclass
class Thing:
    name: str
    hot: bool = False
    cool: bool = False
    clean: bool = False
    on: bool = False  # lamps

    @property
    def kind(self) -> str:
        return kind_of(self.name)


class World:
    """One episode's state, built from a task payload; commands in, ALFWorld's text out."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self.receptacles = {
            name: Receptacle(name, loc, openable, is_open)
            for name, loc, openable, is_open in payload["receptacles"]
        }
        self.objects: dict[str, Thing] = {}
        for name, where in payload["objects"]:
            self.objects[name] = Thing(name)
            self.receptacles[where].contents.append(name)
        self.at: str | None = None
        self.holding: str | None = None

    # ---- text

    def intro(self) -> str:
        """AgentBench's first observation (the welcome banner cut)."""
        return f"{self.overview()}\nYour task is to: {self.payload['goal']}"

    def overview(self) -> str:
        return (
            "You are in the middle of a room. Looking quickly around you, you see "
            f"{listing(list(self.receptacles))}."
        )

    def describe_receptacle(self, r: Receptacle) -> str:
        if r.openable and r.is_open:
            return f"The {r.name} is open. In it, you see {listing(r.contents)}."
        if r.openable:
            return f"The {r.name} is closed."
        return f"On the {r.name}, you see {listing(r.contents)}."

    def describe_object(self, name: str) -> str:
        t = self.objects[name]
        if t.kind in LAMPS:
            return f"This {name} is {'on' if t.on else 'off'}."
        if t.clean and t.hot:
            return f"This is a hot and clean {name}."
        if t.clean and t.cool:
            return f"This is a cool and clean {name}."
        if t.hot:
            return f"This is a hot {name}."
        if t.clean:
            return f"This is a clean {name}."
        if t.cool:
            return f"This is a cold {name}."
        return f"There's nothing special about {name}."

    # ---- commands

    def commands(self) -> dict[str, Callable[[], str]]:
        """The admissible commands here and now, each with its effect."""
        cmds: dict[str, Callable[[], str]] = {
            f"go to {name}": partial(self._go, name) for name in self.receptacles if name != self.at
        }
        cmds["inventory"] = self._inventory
        cmds["look"] = self._look
        held = self.holding
        if held is not None:
            cmds[f"examine {held}"] = partial(self.describe_object, held)
        if self.at is None:
            return cmds
        r = self.receptacles[self.at]
        cmds[f"examine {r.name}"] = partial(self.describe_receptacle, r)
        if r.openable:
            cmds[f"{'close' if r.is_open else 'open'} {r.name}"] = partial(self._toggle_open, r)
        if r.visible:
            for name in r.contents:
                cmds[f"examine {name}"] = partial(self.describe_object, name)
                if kind_of(name) in LAMPS:
                    cmds[f"use {name}"] = partial(self._use, name)
                elif held is None:
                    cmds[f"take {name} from {r.name}"] = partial(self._take, name, r)
            if held is not None:
                cmds[f"put {held} in/on {r.name}"] = partial(self._put, held, r)
        verb = APPLIANCE_VERB.get(r.kind)
        if held is not None and verb is not None:
            cmds[f"{verb} {held} with {r.name}"] = partial(self._process, verb, held, r)
        return cmds

    def admissible(self) -> list[str]:
        return sorted(self.commands())

    def execute(self, command: str) -> str:
        """ALFWorld's raw feedback (``You arrive at loc N. ...`` included)."""
        effect = self.commands().get(command)
        return effect() if effect is not None else NOTHING_HAPPENS

    def _go(self, name: str) -> str:
        self.at = name
        r = self.receptacles[name]
        return f"You arrive at loc {r.loc}. {self.describe_receptacle(r)}"

    def _toggle_open(self, r: Receptacle) -> str:
        r.is_open = not r.is_open
        if r.is_open:
            return f"You open the {r.name}. {self.describe_receptacle(r)}"
        return f"You close the {r.name}."

    def _take(self, name: str, r: Receptacle) -> str:
        r.contents.remove(name)
        self.holding = name
        return f"You pick up the {name} from the {r.name}."

    def _put(self, name: str, r: Receptacle) -> str:
        r.contents.append(name)
        self.holding = None
        return f"You put the {name} in/on the {r.name}."

    def _process(self, verb: str, name: str, r: Receptacle) -> str:
        t = self.objects[name]
        if verb == "clean":
            t.clean = True
        elif verb == "heat":
            t.hot, t.cool = True, False
        else:
            t.cool, t.hot = True, False
        return f"You {verb} the {name} using the {r.name}."

    def _use(self, name: str) -> str:
        t = self.objects[name]
        t.on = not t.on
        return f"You turn {'on' if t.on else 'off'} the {name}."

    def _inventory(self) -> str:
        if self.holding is None:
            return "You are not carrying anything."
        return f"You are carrying: a {self.holding}."

    def _look(self) -> str:
        if self.at is None:
            return self.overview()
        return f"You are facing the {self.at}. Next to it, you see nothing."

    # ---- goal

    def won(self) -> bool:
        """ALFWorld's goal condition for the payload's task type."""
        p = self.payload
        kind, task_type = p["object"], p["task_type"]
        if task_type == "look_at_obj_in_light":
            if self.holding is None or kind_of(self.holding) != kind or self.at is None:
                return False
            here = self.receptacles[self.at].contents
            return any(kind_of(n) == p["lamp"] and self.objects[n].on for n in here)
        needed = 2 if task_type == "pick_two_obj_and_place" else 1
        state = PROCESS.get(task_type, (None, None, None))[2]
        for r in self.receptacles.values():
            if r.kind != p["target"]:
                continue
            done = [n for n in r.contents if kind_of(n) == kind and _has(self.objects[n], state)]
            if len(done) >= needed:
                return True
        return False


def _has(thing: Thing, state: str | None) -> bool:
    return {None: True, "clean": thing.clean, "hot": thing.hot, "cool": thing.cool}[state]
