"""The ScienceWorld family (held-out): the real ScienceWorld simulator, in AgentBench's style.

ScienceWorld (Wang et al., 2022; the `scienceworld` package, a Scala simulator behind a JVM
that py4j talks to) poses elementary-science tasks (boil water, test conductivity, find an
animal, ...) in a text world of ten rooms. Each task type has numbered variations, split by
ScienceWorld itself into train / dev / test; this family takes its train tasks from the
train variations and its test tasks from the test variations, ``n_train`` / ``n_test`` of
them spread round-robin over ``task_types``. The 1-shot demonstration of a task type is its
first dev variation (so it is neither a train nor a test task).

The loop, in the ReAct / AgentBench layout the other families use:

- the prompt: the instruction (the simulator's command grammar), ``OK. ...``, the 1-shot
  demonstration (``Here is one example.`` + its gold path, ``loss: False``), then
  ``Here is your task.`` with the task description and the first ``look around``.
- the agent answers ``Thought: ...`` and/or ``Action: <command>``; the first ``Action:``
  line is the command. A reply without one, or with an empty one, ends the episode as
  AGENT_INVALID_ACTION (reward 0). A command the simulator does not know gets its own answer
  (``No known action matches that input.``) and the episode goes on.
- reward = ScienceWorld's score / 100 (a negative score, a failed task, counts 0). The
  episode ends COMPLETED when the simulator reports the task done (score 100) or failed
  (score < 0), and TASK_LIMIT_REACHED after ``max_rounds`` turns, with the score reached so
  far as its reward (ScienceWorld's metric is the score, partial credit included).

The scripted expert replays the simulator's own gold action sequence, stored in the task's
payload when the tasks are built, so the expert needs no simulator.

Cost: one simulator is one JVM (~1 GB with the default ``-Xmx1g``, 2–5 s to start). An env
borrows one for its episode from a per-process free list and gives it back in ``close()``,
so an EnvPool starts at most as many JVMs as it runs ScienceWorld episodes at once and
reuses them across episodes; a reset (load + look around) takes 0.3–2.4 s (mean 0.9 s on a
busy 2-core machine), a step ~10 ms.
Building the tasks runs each variation once (gold path included) and is cached on disk.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import random
import re
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from agentray.envs.base import (
    Env,
    FamilyConfig,
    no_episode_result,
    split_tasks,
    tasks_from_payloads,
)
from agentray.types import Message, Status, StepResult, TaskSpec

ScienceWorldTask = Literal[
    "boil",
    "change-the-state-of-matter-of",
    "chemistry-mix",
    "chemistry-mix-paint-secondary-color",
    "chemistry-mix-paint-tertiary-color",
    "find-animal",
    "find-living-thing",
    "find-non-living-thing",
    "find-plant",
    "freeze",
    "grow-fruit",
    "grow-plant",
    "identify-life-stages-1",
    "identify-life-stages-2",
    "inclined-plane-determine-angle",
    "inclined-plane-friction-named-surfaces",
    "inclined-plane-friction-unnamed-surfaces",
    "lifespan-longest-lived",
    "lifespan-longest-lived-then-shortest-lived",
    "lifespan-shortest-lived",
    "measure-melting-point-known-substance",
    "measure-melting-point-unknown-substance",
    "melt",
    "mendelian-genetics-known-plant",
    "mendelian-genetics-unknown-plant",
    "power-component",
    "power-component-renewable-vs-nonrenewable-energy",
    "test-conductivity",
    "test-conductivity-of-unknown-substances",
    "use-thermometer",
]

# Task types whose gold paths are short (5-30 steps) and whose variations load fast ('boil'
# is longer: its test variations need the foundry and 50+ steps).
DEFAULT_TASK_TYPES: tuple[str, ...] = (
    "find-living-thing",
    "lifespan-longest-lived",
    "power-component",
    "use-thermometer",
    "chemistry-mix",
    "test-conductivity",
)

INSTALL_HINT = "ScienceWorld is an optional extra: pip install 'agentray[heldout]' (needs Java 17)"

INSTRUCTION = """You are a helpful assistant to do some scientific experiments in an environment.
In the environment, there are several rooms: kitchen, foundry, workshop, bathroom, outside, living room, bedroom, greenhouse, art studio, hallway.
You should explore the environment and find the items you need to complete the experiment.

The available actions are:
open OBJ: open a container
close OBJ: close a container
activate OBJ: activate a device
deactivate OBJ: deactivate a device
connect OBJ to OBJ: connect electrical components
disconnect OBJ: disconnect electrical components
use OBJ [on OBJ]: use a device/item
look around: describe the current room
look at OBJ: describe an object in detail
look in OBJ: describe a container's contents
read OBJ: read a note or book
move OBJ to OBJ: move an object to a container
pick up OBJ: move an object to the inventory
put down OBJ: drop an inventory item
pour OBJ in OBJ: pour a liquid into a container
dunk OBJ in OBJ: dunk a container into a liquid
mix OBJ: chemically mix a container
go to LOC: move to a new location
eat OBJ: eat a food
flush OBJ: flush a toilet
focus on OBJ: signal intent on a task object
wait: take no action for 10 iterations
wait1: take no action for 1 iteration
task: describe the current task
inventory: list your inventory
When a command is ambiguous, the environment lists the options: answer with the number of the one you mean.

Your response should use the following format:

Thought: <your thoughts>
Action: <your next action>"""

OK_REPLY = "OK. I'll follow your instructions and try my best to solve the task."
DEMO_DONE = "The task is completed (score 100/100)."

_ACTION_LINE = re.compile(r"^[ \t]*action[ \t]*:(.*)$", re.IGNORECASE | re.MULTILINE)


class ScienceWorldConfig(FamilyConfig):
    n_train: int = Field(6, ge=0, description="train tasks (from ScienceWorld's train variations)")
    n_test: int = Field(6, ge=0, description="test tasks (from ScienceWorld's test variations)")
    max_rounds: int = Field(
        50,
        gt=0,
        description="agent turns per episode; variations with a longer gold path are skipped",
    )
    task_types: list[ScienceWorldTask] = Field(
        default_factory=lambda: list(DEFAULT_TASK_TYPES),
        min_length=1,
        description="ScienceWorld task types; tasks are spread round-robin over them",
    )
    simplifications: str = Field(
        "",
        description="ScienceWorld simplifications, comma separated (e.g. easy, teleportAction, "
        "openDoors); empty: the full task",
    )
    one_shot: bool = Field(True, description="prepend a 1-shot demonstration of the task type")
    jvm_options: str = Field(
        "-Xmx1g", description="JVM options of each simulator (the JVM's default heap is 1/4 of RAM)"
    )


# --------------------------------------------------------------------------- simulators


def _start_simulator(jvm_options: str) -> Any:
    try:
        from scienceworld import ScienceWorldEnv as Simulator
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from None
    with _Simulators.start_lock:  # JAVA_TOOL_OPTIONS is read when the JVM starts
        previous = os.environ.get("JAVA_TOOL_OPTIONS")
        os.environ["JAVA_TOOL_OPTIONS"] = jvm_options
        try:
            return Simulator("", envStepLimit=10**9)  # this family counts the rounds
        finally:
            if previous is None:
                os.environ.pop("JAVA_TOOL_OPTIONS", None)
            else:
                os.environ["JAVA_TOOL_OPTIONS"] = previous


class _Simulators:
    """This process's started simulators (one JVM each), lent to one env at a time."""

    start_lock = threading.Lock()

    def __init__(self) -> None:
        self._idle: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self.started = 0

    def acquire(self, jvm_options: str) -> Any:
        with self._lock:
            idle = self._idle.get(jvm_options)
            if idle:
                return idle.pop()
        simulator = _start_simulator(jvm_options)
        simulator.agentray_jvm_options = jvm_options
        with self._lock:
            self.started += 1
        return simulator

    def release(self, simulator: Any) -> None:
        with self._lock:
            self._idle.setdefault(simulator.agentray_jvm_options, []).append(simulator)

    @staticmethod
    def discard(simulator: Any) -> None:
        with contextlib.suppress(Exception):  # a dead JVM: nothing left to close
            simulator.close()

    def close_idle(self) -> None:
        with self._lock:
            idle = [s for group in self._idle.values() for s in group]
            self._idle.clear()
        for simulator in idle:
            self.discard(simulator)


SIMULATORS = _Simulators()
atexit.register(SIMULATORS.close_idle)


# --------------------------------------------------------------------------- tasks


def parse_action(reply: str) -> str | None:
    """The command of the first ``Action:`` line, or None when there is none (or it is empty)."""
    match = _ACTION_LINE.search(reply)
    if match is None:
        return None
    command = match.group(1).strip()
    return command or None


def problem_text(payload: dict[str, Any]) -> str:
    return f"Here is your task.\nTask: {payload['description']}\n{payload['observation']}"


def _load(simulator: Any, task_type: str, variation: int, simplifications: str, gold: bool) -> str:
    """Load a variation and return the first observation (``look around``)."""
    simulator.load(task_type, variation, simplifications, generateGoldPath=gold)
    observation, _ = simulator.reset()
    return observation


def _variation_payload(
    simulator: Any, task_type: str, variation: int, simplifications: str
) -> dict[str, Any]:
    observation = _load(simulator, task_type, variation, simplifications, gold=True)
    return {
        "task_type": task_type,
        "variation": variation,
        "simplifications": simplifications,
        "description": simulator.get_task_description(),
        "observation": observation,
        "gold": list(simulator.get_gold_action_sequence()),
    }


def _split_variations(simulator: Any, task_type: str, seed: int) -> dict[str, list[int]]:
    simulator.load(task_type, 0, "")
    variations = {
        "train": list(simulator.get_variations_train()),
        "dev": list(simulator.get_variations_dev()),
        "test": list(simulator.get_variations_test()),
    }
    for split in ("train", "test"):  # dev stays in order: its first variation is the demo
        random.Random(f"{seed}:{task_type}:{split}").shuffle(variations[split])
    return variations


def _build(config: ScienceWorldConfig) -> dict[str, Any]:
    """Payloads of the train and test tasks and of each task type's demonstration."""
    simulator = SIMULATORS.acquire(config.jvm_options)
    try:
        return _build_with(simulator, config)
    finally:
        SIMULATORS.discard(simulator)  # envs run elsewhere (EnvPool actors), mostly


def _build_with(simulator: Any, config: ScienceWorldConfig) -> dict[str, Any]:
    types = list(dict.fromkeys(config.task_types))
    variations = {t: _split_variations(simulator, t, config.seed) for t in types}
    seen: set[str] = set()
    out: dict[str, Any] = {"train": [], "test": [], "demos": {}}
    for task_type in types:
        demo = _first_fitting(simulator, config, task_type, variations[task_type]["dev"], seen)
        out["demos"][task_type] = _record_demo(simulator, demo)
    for split, n in (("train", config.n_train), ("test", config.n_test)):
        cursors = dict.fromkeys(types, 0)
        for index in range(n):
            task_type = types[index % len(types)]
            pool = variations[task_type][split]
            payload, cursors[task_type] = _next_fitting(
                simulator, config, task_type, pool, cursors[task_type], seen
            )
            out[split].append(payload)
    return out


def _first_fitting(simulator, config, task_type, pool, seen) -> dict[str, Any]:
    return _next_fitting(simulator, config, task_type, pool, 0, seen)[0]


def _next_fitting(simulator, config, task_type, pool, start, seen) -> tuple[dict[str, Any], int]:
    """The first variation of ``pool[start:]`` whose gold path fits ``max_rounds`` and whose
    problem text is new (the TaskIndex finds tasks by it), and the cursor after it."""
    for i in range(start, len(pool)):
        payload = _variation_payload(simulator, task_type, pool[i], config.simplifications)
        key = problem_text(payload)
        if len(payload["gold"]) <= config.max_rounds and key not in seen:
            seen.add(key)
            return payload, i + 1
    raise ValueError(
        f"scienceworld: {task_type!r} has too few variations with a gold path within "
        f"max_rounds={config.max_rounds}; lower n_train / n_test or add task_types"
    )


def _record_demo(simulator: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """The demo variation's gold path with the simulator's answers."""
    _load(simulator, payload["task_type"], payload["variation"], payload["simplifications"], False)
    observations = [simulator.server.step(command) for command in payload["gold"]]
    score = round(100 * simulator.server.getScore())
    if score < 100:
        raise RuntimeError(f"the {payload['task_type']} demonstration scores {score}, not 100")
    return {**payload, "observations": observations}


def _cache_path(config: ScienceWorldConfig) -> Path:
    from importlib.metadata import version

    from agentray.paths import default_home

    fields = config.model_dump(exclude={"one_shot", "jvm_options"})
    key = json.dumps([version("scienceworld"), fields], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return default_home() / "scienceworld" / f"tasks-{digest}.json"


_BUILD_LOCK = threading.Lock()


def _built(config_json: str) -> dict[str, Any]:
    with _BUILD_LOCK:  # the EnvPool's threads: build once
        return _built_once(config_json)


@lru_cache(maxsize=8)
def _built_once(config_json: str) -> dict[str, Any]:
    """Built task payloads, cached in memory and on disk (building runs the simulator)."""
    config = ScienceWorldConfig.model_validate_json(config_json)
    path = _cache_path(config)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    built = _build(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(built))
    os.replace(tmp, path)
    return built


def _tasks_by_split(built: dict[str, Any]) -> dict[str, list[TaskSpec]]:
    return tasks_from_payloads(ScienceWorldEnv.name, built["train"], built["test"], "variation")


def demonstration(demo: dict[str, Any]) -> list[Message]:
    turns: list[Message] = [
        {
            "role": "user",
            "content": f"Here is one example.\nTask: {demo['description']}\n{demo['observation']}",
        }
    ]
    for command, observation in zip(demo["gold"], demo["observations"], strict=True):
        turns.append({"role": "assistant", "content": f"Action: {command}", "loss": False})
        turns.append({"role": "user", "content": observation})
    turns[-1] = {"role": "user", "content": f"{turns[-1]['content']}\n{DEMO_DONE}"}
    turns.append({"role": "assistant", "content": "OK.", "loss": False})
    return turns


# --------------------------------------------------------------------------- the env


class ScienceWorldEnv(Env):
    name: ClassVar[str] = "scienceworld"
    version: ClassVar[str] = "1"
    config_cls: ClassVar[type[FamilyConfig]] = ScienceWorldConfig

    config: ScienceWorldConfig

    def __init__(self, config: ScienceWorldConfig | None = None) -> None:
        super().__init__(config)
        self._simulator: Any = None
        self._rounds = 0
        self._score = 0
        self._done = True

    def _built(self) -> dict[str, Any]:
        return _built(self.config.model_dump_json())

    def tasks(self, split: str) -> list[TaskSpec]:
        return split_tasks(_tasks_by_split(self._built()), split)

    def prompt(self, task: TaskSpec) -> list[Message]:
        messages: list[Message] = [
            {"role": "user", "content": INSTRUCTION},
            {"role": "assistant", "content": OK_REPLY, "loss": False},
        ]
        if self.config.one_shot:
            messages += demonstration(self._built()["demos"][task.payload["task_type"]])
        messages.append({"role": "user", "content": problem_text(task.payload)})
        return messages

    def reset(self, task: TaskSpec) -> list[Message]:
        messages = self.prompt(task)
        if self._simulator is None:
            self._simulator = SIMULATORS.acquire(self.config.jvm_options)
        p = task.payload
        _load(self._simulator, p["task_type"], p["variation"], p["simplifications"], gold=False)
        self._rounds = 0
        self._score = 0
        self._done = False
        return messages

    @staticmethod
    def action_problem(reply: str) -> str | None:
        return "no `Action:` line" if parse_action(reply) is None else None

    def step(self, action: str) -> StepResult:
        if self._done or self._simulator is None:
            return no_episode_result()
        self._rounds += 1
        command = parse_action(action)
        if command is None:
            return self._finish(Status.AGENT_INVALID_ACTION, 0.0, None, {"error": "no Action"})
        try:
            observation = self._simulator.server.step(command)
            self._score = round(100 * self._simulator.server.getScore())
            completed = bool(self._simulator.server.getCompleted())
        except Exception as e:  # the JVM died or py4j lost it: this simulator is gone
            SIMULATORS.discard(self._simulator)
            self._simulator = None
            return self._finish(Status.TASK_ERROR, 0.0, None, {"error": f"simulator: {e}"})
        info = {"command": command, "score": self._score}
        reward = max(self._score, 0) / 100
        if completed or self._score >= 100 or self._score < 0:
            return self._finish(Status.COMPLETED, reward, observation, info)
        if self._rounds >= self.config.max_rounds:
            return self._finish(Status.TASK_LIMIT_REACHED, reward, observation, info)
        return StepResult(observation=observation, done=False, reward=0.0, info=info)

    def close(self) -> None:
        if self._simulator is not None:
            SIMULATORS.release(self._simulator)
            self._simulator = None
        self._done = True

    def expert_actions(self, task: TaskSpec) -> list[str]:
        return [f"Action: {command}" for command in task.payload["gold"]]
