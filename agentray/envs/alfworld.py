"""The Household family (ALFWorld) in AgentBench's ALFWorld format, on a pure-Python world.

Each task is one generated room (kitchen, living room, bedroom or bathroom): receptacles,
some openable (cabinet, drawer, fridge, microwave, safe), some appliances (sinkbasin cleans,
microwave heats, fridge cools, a desklamp or floorlamp lights), and numbered objects placed
where they are usually found, plus one goal of ALFWorld's six task types. The world speaks
ALFWorld's command grammar (``go to {recep}``, ``take {obj} from {recep}``,
``put {obj} in/on {recep}``, ``open``/``close``, ``clean``/``heat``/``cool {obj} with
{recep}``, ``use {lamp}``, ``examine``, ``inventory``, ``look``) and answers in ALFWorld's
TextWorld phrasing; a command that is not admissible gets ``Nothing happens.``. The real
``alfworld`` engine is not needed: the state is a few dicts, so reset and step take
microseconds.

AgentBench's ALFWorld loop (src/server/tasks/alfworld/task.py, v0.2), reproduced here:

- the agent answers ``THOUGHT: ...`` and/or ``ACTION: ...``; the first ``ACTION:`` line is
  the command (lower-cased). A reply without one, or with an empty one, ends the episode as
  AGENT_INVALID_ACTION (reward 0).
- a command that is not admissible is snapped to the admissible command with the highest
  sentence BLEU (NLTK's 4-gram BLEU, smoothing method 4) when that BLEU exceeds 0.01, else
  passed on as typed (and then does nothing) (``fuzzy_match``).
- the ``You arrive at loc N.`` prefix of an arrival is cut from the observation.
- the same reply three times in a row (after more than three turns) ends the episode as
  AGENT_INVALID_ACTION (``fail_on_repeat``).
- reward 1 when the goal condition holds (the episode ends COMPLETED), 0 otherwise; after
  ``max_rounds`` (35) turns without success, TASK_LIMIT_REACHED.
- the prompt: the instruction, ``OK. ...``, a 1-shot demonstration of the same task type
  (``Here is one example.`` ... ``ACTION: Task succeeded.``), then ``Here is your task.``
  and the room. AgentBench appends `` AVAILABLE ACTIONS: ...`` to the newest turn and cuts
  it from the older ones; a conversation that only grows cannot do that, so by default the
  list is left out (the form AgentInstruct's ALFWorld trajectories keep) and
  ``show_available_actions`` appends it to every observation.

The scripted expert searches the receptacles where the object is usually found (opening
closed ones), takes it, cleans / heats / cools it or carries it to the lamp, and places it.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any, ClassVar, Literal, get_args

from pydantic import Field, model_validator

from agentray.envs.base import (
    Env,
    FamilyConfig,
    Redraw,
    generate_split_tasks,
    no_episode_result,
    split_tasks,
    task_seed,
)
from agentray.types import Message, Status, StepResult, TaskSpec

# AgentBench's ALFWorld instruction (src/server/tasks/alfworld/task.py, v0.2), verbatim.
INSTRUCTION = (
    "Interact with a household to solve a task. Imagine you are an intelligent agent in a household environment and your target is to perform actions to complete the task goal. "
    "At the beginning of your interactions, you will be given the detailed description of the current environment and your goal to accomplish. "
    "For each of your turn, you will be given a list of actions which you can choose one to perform in this turn. "
    'You should choose from two actions: "THOUGHT" or "ACTION". '
    'If you choose "THOUGHT", you should first think about the current condition and plan for your future actions, and then output your action in this turn. '
    'Your output must strictly follow this format:"THOUGHT: your thoughts.\n ACTION: your next action\n"; '
    'If you choose "ACTION", you should directly output the action in this turn. '
    'Your output must strictly follow this format:"ACTION: your next action\n". '
    "After your each turn, the environment will give you immediate feedback based on which you plan your next few steps. "
    'if the environment output "Nothing happened", that means the previous action is invalid and you should try more options.\n'
    " Reminder: \n1. the action must be chosen from the given available actions. Any actions except provided available actions will be regarded as illegal. \n"
    "2. Think when necessary, try to act directly more in the process.\n\n"
)
OK_REPLY = "OK. I'll follow your instructions and try my best to solve the task."
NOTHING_HAPPENS = "Nothing happens."
DEMO_END = "ACTION: Task succeeded."

TaskType = Literal[
    "pick_and_place",
    "pick_clean_then_place",
    "pick_heat_then_place",
    "pick_cool_then_place",
    "look_at_obj_in_light",
    "pick_two_obj_and_place",
]
TASK_TYPES: tuple[str, ...] = get_args(TaskType)


class AlfWorldConfig(FamilyConfig):
    max_rounds: int = Field(35, ge=1, description="agent turns per episode (AgentBench's max_step)")
    task_types: list[TaskType] = Field(
        default_factory=lambda: list(TASK_TYPES),
        min_length=1,
        description="which of ALFWorld's six task types to generate (drawn uniformly)",
    )
    min_distractors: int = Field(4, ge=0, description="fewest objects besides the goal's")
    max_distractors: int = Field(12, ge=0, description="most objects besides the goal's")
    max_expert_steps: int = Field(
        30, ge=1, description="a drawn world whose expert plan is longer is drawn again"
    )
    show_available_actions: bool = Field(
        False, description="append AgentBench's ' AVAILABLE ACTIONS: ...' list to every turn"
    )
    fuzzy_match: bool = Field(
        True, description="snap an inadmissible command to the nearest admissible one (BLEU)"
    )
    fail_on_repeat: bool = Field(
        True, description="the same reply three times in a row ends as agent_invalid_action"
    )
    one_shot: bool = Field(True, description="False: no demonstration before the task")

    @model_validator(mode="after")
    def _check(self) -> AlfWorldConfig:
        if self.min_distractors > self.max_distractors:
            raise ValueError("min_distractors must not exceed max_distractors")
        if self.max_expert_steps > self.max_rounds:
            raise ValueError("max_expert_steps must not exceed max_rounds (the expert must fit)")
        if len(set(self.task_types)) != len(self.task_types):
            raise ValueError("task_types has duplicates")
        return self


# --------------------------------------------------------------------------- room catalogue

OPENABLE = frozenset({"cabinet", "drawer", "fridge", "microwave", "safe"})
LAMPS = ("desklamp", "floorlamp")
LAMP_PLACES = ("sidetable", "desk", "dresser")
APPLIANCE_VERB = {"sinkbasin": "clean", "microwave": "heat", "fridge": "cool"}
PROCESS = {  # task type -> (verb, appliance kind, adjective)
    "pick_clean_then_place": ("clean", "sinkbasin", "clean"),
    "pick_heat_then_place": ("heat", "microwave", "hot"),
    "pick_cool_then_place": ("cool", "fridge", "cool"),
}


@dataclass(frozen=True)
class Scene:
    receptacles: dict[str, tuple[int, int]]  # kind -> (fewest, most)
    objects: dict[str, tuple[str, ...]]  # object kind -> receptacle kinds, likeliest first
    lamps: bool = False


def _places(spec: str) -> dict[str, tuple[str, ...]]:
    """``"apple: countertop fridge; egg: fridge"`` -> {"apple": ("countertop", "fridge"), ...}."""
    out = {}
    for item in spec.split(";"):
        kind, places = item.split(":")
        out[kind.strip()] = tuple(places.split())
    return out


SCENES: dict[str, Scene] = {
    "kitchen": Scene(
        {
            "cabinet": (2, 6),
            "coffeemachine": (1, 1),
            "countertop": (1, 3),
            "diningtable": (0, 1),
            "drawer": (1, 4),
            "fridge": (1, 1),
            "garbagecan": (1, 1),
            "microwave": (1, 1),
            "shelf": (0, 2),
            "sinkbasin": (1, 1),
            "stoveburner": (2, 4),
            "toaster": (1, 1),
        },
        _places(
            "apple: countertop diningtable fridge sinkbasin garbagecan;"
            "bowl: cabinet diningtable countertop fridge shelf sinkbasin;"
            "bread: countertop diningtable fridge cabinet;"
            "butterknife: drawer countertop diningtable sinkbasin;"
            "cup: cabinet countertop diningtable fridge shelf sinkbasin;"
            "dishsponge: sinkbasin countertop cabinet drawer;"
            "egg: fridge countertop diningtable sinkbasin garbagecan;"
            "fork: drawer countertop diningtable sinkbasin;"
            "kettle: stoveburner countertop cabinet;"
            "knife: countertop diningtable drawer;"
            "ladle: drawer countertop diningtable sinkbasin;"
            "lettuce: fridge countertop diningtable garbagecan;"
            "mug: coffeemachine cabinet countertop diningtable shelf sinkbasin fridge;"
            "pan: stoveburner cabinet countertop diningtable;"
            "peppershaker: countertop diningtable cabinet shelf drawer;"
            "plate: cabinet countertop diningtable shelf fridge;"
            "pot: stoveburner cabinet countertop diningtable fridge;"
            "potato: fridge countertop diningtable sinkbasin garbagecan;"
            "saltshaker: countertop diningtable cabinet shelf drawer;"
            "soapbottle: countertop cabinet shelf;"
            "spatula: drawer countertop diningtable sinkbasin;"
            "spoon: drawer countertop diningtable sinkbasin;"
            "tomato: fridge countertop diningtable sinkbasin garbagecan;"
            "winebottle: countertop diningtable cabinet fridge shelf"
        ),
    ),
    "livingroom": Scene(
        {
            "armchair": (0, 1),
            "cabinet": (0, 2),
            "coffeetable": (1, 1),
            "diningtable": (0, 1),
            "drawer": (0, 3),
            "dresser": (0, 1),
            "garbagecan": (1, 1),
            "shelf": (0, 3),
            "sidetable": (1, 2),
            "sofa": (1, 1),
            "tvstand": (0, 1),
        },
        _places(
            "box: coffeetable sofa armchair diningtable sidetable dresser shelf;"
            "cellphone: coffeetable sofa sidetable armchair diningtable dresser drawer;"
            "creditcard: coffeetable sidetable sofa armchair diningtable dresser drawer shelf;"
            "keychain: coffeetable sidetable sofa armchair diningtable dresser drawer shelf;"
            "laptop: sofa coffeetable armchair diningtable;"
            "newspaper: coffeetable sofa armchair sidetable diningtable dresser shelf;"
            "pillow: sofa armchair;"
            "remotecontrol: coffeetable sofa armchair sidetable tvstand diningtable dresser;"
            "statue: coffeetable sidetable shelf dresser diningtable tvstand;"
            "vase: shelf coffeetable sidetable diningtable tvstand cabinet;"
            "watch: coffeetable sidetable dresser shelf drawer"
        ),
        lamps=True,
    ),
    "bedroom": Scene(
        {
            "bed": (1, 1),
            "desk": (0, 1),
            "drawer": (2, 5),
            "dresser": (0, 1),
            "garbagecan": (1, 1),
            "laundryhamper": (0, 1),
            "safe": (0, 1),
            "shelf": (0, 4),
            "sidetable": (1, 2),
        },
        _places(
            "alarmclock: desk sidetable dresser shelf;"
            "book: bed desk sidetable dresser shelf drawer;"
            "bowl: desk dresser shelf sidetable;"
            "cd: desk drawer sidetable dresser shelf safe garbagecan;"
            "cellphone: bed desk sidetable dresser drawer shelf;"
            "cloth: laundryhamper dresser drawer;"
            "creditcard: desk sidetable dresser drawer shelf;"
            "keychain: sidetable dresser desk drawer shelf safe;"
            "laptop: bed desk dresser sidetable;"
            "mug: desk sidetable dresser shelf;"
            "pen: desk sidetable drawer dresser shelf;"
            "pencil: desk sidetable drawer dresser shelf;"
            "pillow: bed"
        ),
        lamps=True,
    ),
    "bathroom": Scene(
        {
            "bathtubbasin": (0, 1),
            "cabinet": (1, 4),
            "countertop": (1, 1),
            "garbagecan": (1, 1),
            "handtowelholder": (0, 2),
            "shelf": (0, 3),
            "sinkbasin": (1, 2),
            "toilet": (1, 1),
            "toiletpaperhanger": (1, 1),
            "towelholder": (1, 1),
        },
        _places(
            "candle: countertop toilet cabinet shelf bathtubbasin;"
            "cloth: cabinet countertop bathtubbasin sinkbasin shelf;"
            "dishsponge: countertop cabinet toilet sinkbasin;"
            "handtowel: handtowelholder;"
            "soapbar: toilet countertop bathtubbasin sinkbasin cabinet garbagecan;"
            "soapbottle: countertop toilet cabinet shelf garbagecan;"
            "spraybottle: toilet countertop cabinet shelf garbagecan;"
            "tissuebox: toilet countertop shelf cabinet;"
            "toiletpaper: toiletpaperhanger toilet countertop cabinet shelf garbagecan;"
            "towel: towelholder"
        ),
    ),
}

_ANY = None  # every object of the scene qualifies


def _kinds(text: str) -> frozenset[str]:
    return frozenset(text.split())


TASK_SPACE: dict[str, tuple[tuple[str, ...], frozenset[str] | None]] = {
    "pick_and_place": (("kitchen", "livingroom", "bedroom", "bathroom"), _ANY),
    "pick_clean_then_place": (
        ("kitchen", "bathroom"),
        _kinds(
            "apple bowl butterknife cloth cup dishsponge egg fork kettle knife ladle lettuce mug "
            "pan plate pot potato soapbar spatula spoon tomato"
        ),
    ),
    "pick_heat_then_place": (
        ("kitchen",),
        _kinds("apple bread cup egg mug plate potato tomato"),
    ),
    "pick_cool_then_place": (
        ("kitchen",),
        _kinds("apple bowl bread cup egg lettuce mug pan plate pot potato tomato winebottle"),
    ),
    "look_at_obj_in_light": (("livingroom", "bedroom"), _ANY),
    "pick_two_obj_and_place": (("kitchen", "livingroom", "bedroom", "bathroom"), _ANY),
}
GOALS: dict[str, tuple[str, str]] = {  # ALFWorld's two phrasings per task type
    "pick_and_place": ("put a {o} in {r}.", "put some {o} on {r}."),
    "pick_clean_then_place": ("put a clean {o} in {r}.", "clean some {o} and put it in {r}."),
    "pick_heat_then_place": ("put a hot {o} in {r}.", "heat some {o} and put it in {r}."),
    "pick_cool_then_place": ("put a cool {o} in {r}.", "cool some {o} and put it in {r}."),
    "look_at_obj_in_light": ("look at {o} under the {lamp}.", "examine the {o} with the {lamp}."),
    "pick_two_obj_and_place": ("put two {o} in {r}.", "find two {o} and put them in {r}."),
}
# AgentBench picks the demonstration by the game's task type.
DEMO_KEYS = {
    "pick_and_place": "put",
    "pick_clean_then_place": "clean",
    "pick_heat_then_place": "heat",
    "pick_cool_then_place": "cool",
    "look_at_obj_in_light": "examine",
    "pick_two_obj_and_place": "puttwo",
}


def kind_of(name: str) -> str:
    """``"apple 1"`` -> ``"apple"``."""
    return name.rsplit(" ", 1)[0]


def _number(name: str) -> int:
    return int(name.rsplit(" ", 1)[1])


def _display_key(name: str) -> tuple[str, int]:
    # ALFWorld lists things by kind, higher numbers first ("a soapbar 4, and a soapbar 3")
    return kind_of(name), -_number(name)


def listing(names: list[str]) -> str:
    """TextWorld's list: ``nothing``, ``a x``, ``a x, and a y``, ``a x, a y, and a z``."""
    items = [f"a {name}" for name in sorted(names, key=_display_key)]
    if not items:
        return "nothing"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + ", and " + items[-1]


# --------------------------------------------------------------------------- the world


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


# --------------------------------------------------------------------------- AgentBench's parsing


def parse_action(text: str) -> str | None:
    """AgentBench's ``process_action``: the first ``ACTION:`` line, stripped and lower-cased.

    None when there is no ``ACTION:`` or it is empty (AgentBench: AGENT_INVALID_ACTION).
    """
    match = re.search("ACTION:(.*)", text)
    if match is None:
        return None
    return match.group(1).strip().lower().split("\n")[0] or None


def process_ob(observation: str) -> str:
    """AgentBench cuts the ``You arrive at loc N. `` prefix of an arrival."""
    if observation.startswith("You arrive at loc "):
        return observation[observation.find(". ") + 2 :]
    return observation


def sentence_bleu(reference: str, candidate: str) -> float:
    """NLTK's ``sentence_bleu`` (4-gram, uniform weights) with ``SmoothingFunction().method4``."""
    ref, hyp = reference.split(), candidate.split()
    numerators, denominators = [], []
    for n in range(1, 5):
        hyp_grams = Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
        ref_grams = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
        numerators.append(sum(min(c, ref_grams[g]) for g, c in hyp_grams.items()))
        denominators.append(max(1, sum(hyp_grams.values())))
    if numerators[0] == 0:
        return 0.0
    precisions = [a / b for a, b in zip(numerators, denominators, strict=True)]
    increment = 1
    for i, numerator in enumerate(numerators):
        if numerator == 0 and len(hyp) > 1:  # method4, k = 5
            precisions[i] = 1 / (2**increment * 5 / math.log(len(hyp))) / denominators[i]
            increment += 1
    brevity = 1.0 if len(hyp) > len(ref) else math.exp(1 - len(ref) / len(hyp))
    return brevity * math.exp(math.fsum(0.25 * math.log(p) for p in precisions if p > 0))


def snap_to_admissible(action: str, choices: list[str], limit: float = 0.01) -> str:
    """AgentBench's matching: the choice itself, else the highest-BLEU choice above ``limit``."""
    if not choices or action in choices:
        return action
    scores = [sentence_bleu(choice, action) for choice in choices]
    best = max(range(len(choices)), key=scores.__getitem__)  # the first best, like argmax
    return choices[best] if scores[best] > limit else action


def available_actions(commands: list[str]) -> str:
    return " AVAILABLE ACTIONS: " + "\n".join(commands) + "\n"


# --------------------------------------------------------------------------- the expert


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
        contents = sorted(self.world.receptacles[name].contents, key=_display_key)
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


# --------------------------------------------------------------------------- generation


def _draw_receptacles(rng: random.Random, scene: Scene) -> list[list[Any]]:
    names = [
        f"{kind} {i}"
        for kind, (low, high) in scene.receptacles.items()
        for i in range(1, rng.randint(low, high) + 1)
    ]
    names.sort(key=_display_key)
    locs = rng.sample(range(1, len(names) + 16), len(names))
    return [
        [name, loc, kind_of(name) in OPENABLE, kind_of(name) in OPENABLE and rng.random() < 0.2]
        for name, loc in zip(names, locs, strict=True)
    ]


def _goal_choice(
    rng: random.Random, task_type: str, scene: Scene, present: set[str]
) -> tuple[str, str | None]:
    """The goal object kind and (for place tasks) the target receptacle kind."""
    allowed = TASK_SPACE[task_type][1]
    kinds = [k for k in scene.objects if allowed is None or k in allowed]
    rng.shuffle(kinds)
    appliance = PROCESS.get(task_type, (None, None))[1]
    for kind in kinds:
        places = [k for k in dict.fromkeys(scene.objects[kind]) if k in present]
        if task_type == "look_at_obj_in_light":
            if places:
                return kind, None
            continue
        targets = [k for k in places if k != appliance]
        rng.shuffle(targets)
        for target in targets:
            if any(k != target for k in places):  # somewhere else to start from
                return kind, target
    raise Redraw


def _numbered(rng: random.Random, kind: str, count: int) -> list[str]:
    return [f"{kind} {i}" for i in rng.sample(range(1, count + 1), count)]


def make_payload(
    rng: random.Random,
    task_types: list[str] | tuple[str, ...] = TASK_TYPES,
    min_distractors: int = 4,
    max_distractors: int = 12,
    max_expert_steps: int = 30,
) -> dict[str, Any]:
    """One task; the task type is drawn once, so redraws keep the types evenly mixed."""
    task_type = rng.choice(list(task_types))
    for _ in range(100):
        try:
            return _draw_world(rng, task_type, min_distractors, max_distractors, max_expert_steps)
        except Redraw:
            continue
    raise Redraw


def _draw_world(
    rng: random.Random,
    task_type: str,
    min_distractors: int,
    max_distractors: int,
    max_expert_steps: int,
) -> dict[str, Any]:
    scene_name = rng.choice(TASK_SPACE[task_type][0])
    scene = SCENES[scene_name]
    receptacles = _draw_receptacles(rng, scene)
    by_kind: dict[str, list[str]] = {}
    for name, *_ in receptacles:
        by_kind.setdefault(kind_of(name), []).append(name)
    kind, target = _goal_choice(rng, task_type, scene, set(by_kind))

    def spot(object_kind: str, avoid: str | None = None) -> str:
        kinds = [k for k in scene.objects[object_kind] if k in by_kind and k != avoid]
        return rng.choice(by_kind[rng.choice(kinds)])

    low = 2 if task_type == "pick_two_obj_and_place" else 1
    objects = [[name, spot(kind, target)] for name in _numbered(rng, kind, rng.randint(low, 3))]
    others = [k for k in scene.objects if k != kind and any(p in by_kind for p in scene.objects[k])]
    counts = Counter(
        rng.choice(others) for _ in range(rng.randint(min_distractors, max_distractors))
    )
    for other in sorted(counts):
        objects += [[name, spot(other)] for name in _numbered(rng, other, counts[other])]
    lamp = _place_lamp(rng, task_type, scene, by_kind, objects)
    payload = {
        "task_type": task_type,
        "scene": scene_name,
        "goal": rng.choice(GOALS[task_type]).format(o=kind, r=target, lamp=lamp),
        "object": kind,
        "target": target,
        "lamp": lamp,
        "receptacles": receptacles,
        "objects": objects,
    }
    if len(expert_plan(payload)) > max_expert_steps:
        raise Redraw
    return payload


def _place_lamp(
    rng: random.Random,
    task_type: str,
    scene: Scene,
    by_kind: dict[str, list[str]],
    objects: list[list[Any]],
) -> str | None:
    """One lamp for a look-at task (a desklamp sometimes stands in other rooms with lamps)."""
    spots = [name for k in LAMP_PLACES for name in by_kind.get(k, [])]
    if task_type == "look_at_obj_in_light":
        lamp = rng.choice(LAMPS)
    elif scene.lamps and spots and rng.random() < 0.5:
        lamp = "desklamp"
    else:
        return None
    if not spots:
        raise Redraw
    objects.append([f"{lamp} 1", rng.choice(spots)])
    return lamp if task_type == "look_at_obj_in_light" else None


def problem_text(payload: dict[str, Any]) -> str:
    """AgentBench's task turn: ``Here is your task. `` + the first observation."""
    return "Here is your task. " + World(payload).intro()


@lru_cache(maxsize=16)
def _all_tasks(config_json: str) -> dict[str, list[TaskSpec]]:
    config = AlfWorldConfig.model_validate_json(config_json)
    return generate_split_tasks(
        AlfWorldEnv.name,
        config,
        lambda rng: make_payload(
            rng,
            config.task_types,
            config.min_distractors,
            config.max_distractors,
            config.max_expert_steps,
        ),
        problem_text,
    )


def _demo_payload(task_type: str) -> dict[str, Any]:
    for attempt in range(500):
        rng = random.Random(task_seed("alfworld-demo", 0, task_type, 0, attempt))
        try:
            return make_payload(rng, (task_type,), 3, 6, max_expert_steps=10)
        except Redraw:
            continue
    raise RuntimeError(f"no short demonstration for {task_type}")


@lru_cache(maxsize=8)
def demonstration(task_type: str) -> tuple[Message, ...]:
    """A fixed 1-shot episode of ``task_type`` in AgentBench's demo layout (actions only)."""
    payload = _demo_payload(task_type)
    world = World(payload)
    turns: list[Message] = [{"role": "user", "content": "Here is one example.\n" + world.intro()}]
    for command, _ in expert_plan(payload):
        turns.append({"role": "assistant", "content": f"ACTION: {command}", "loss": False})
        turns.append({"role": "user", "content": process_ob(world.execute(command))})
    if not world.won():
        raise RuntimeError(f"the {task_type} demonstration does not reach its goal")
    turns.append({"role": "assistant", "content": DEMO_END, "loss": False})
    return tuple(turns)


# --------------------------------------------------------------------------- the env


class AlfWorldEnv(Env):
    name: ClassVar[str] = "alfworld"
    version: ClassVar[str] = "1"
    config_cls: ClassVar[type[FamilyConfig]] = AlfWorldConfig

    config: AlfWorldConfig

    def __init__(self, config: AlfWorldConfig | None = None) -> None:
        super().__init__(config)
        self._world: World | None = None
        self._rounds = 0
        self._replies: list[str] = []
        self._done = True

    def tasks(self, split: str) -> list[TaskSpec]:
        return split_tasks(_all_tasks(self.config.model_dump_json()), split)

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

    def reset(self, task: TaskSpec) -> list[Message]:
        self._world = World(task.payload)
        self._rounds = 0
        self._replies = []
        self._done = False
        return self.prompt(task)

    @staticmethod
    def action_problem(reply: str) -> str | None:
        return "no `ACTION:` line" if parse_action(reply) is None else None

    def step(self, action: str) -> StepResult:
        world = self._world
        if self._done or world is None:
            return no_episode_result()
        self._rounds += 1
        command = parse_action(action)
        if command is None:
            return self._finish(Status.AGENT_INVALID_ACTION, 0.0, None, {"error": "no ACTION"})
        if self.config.fuzzy_match:
            command = snap_to_admissible(command, world.admissible())
        observation = process_ob(world.execute(command))
        if self.config.show_available_actions:
            observation += available_actions(world.admissible())
        info = {"command": command}
        self._replies.append(action)
        last = self._replies[-3:]
        if self.config.fail_on_repeat and len(self._replies) > 3 and last.count(last[0]) == 3:
            info["error"] = "the same reply three times in a row"
            return self._finish(Status.AGENT_INVALID_ACTION, 0.0, observation, info)
        if world.won():
            return self._finish(Status.COMPLETED, 1.0, observation, info)
        if self._rounds >= self.config.max_rounds:
            return self._finish(Status.TASK_LIMIT_REACHED, 0.0, observation, info)
        return StepResult(observation=observation, done=False, info=info)

    def close(self) -> None:
        self._world = None
        self._done = True

    def expert_actions(self, task: TaskSpec) -> list[str]:
        return [format_reply(command, thought) for command, thought in expert_plan(task.payload)]
