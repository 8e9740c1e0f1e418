"""Seeded task generation and the 1-shot demonstrations."""

from __future__ import annotations

import random
from collections import Counter
from functools import lru_cache, partial
from typing import Any

from agentray.envs.alfworld.config import TASK_TYPES, AlfWorldConfig
from agentray.envs.alfworld.expert import expert_plan
from agentray.envs.alfworld.parsing import process_ob
from agentray.envs.alfworld.prompt import DEMO_END
from agentray.envs.alfworld.scenes import (
    GOALS,
    LAMP_PLACES,
    LAMPS,
    OPENABLE,
    PROCESS,
    SCENES,
    TASK_SPACE,
    Scene,
    display_key,
    kind_of,
)
from agentray.envs.alfworld.world import World
from agentray.envs.generate import Redraw, generate_split_tasks, task_seed
from agentray.types import Message, TaskSpec


def _draw_receptacles(rng: random.Random, scene: Scene) -> list[list[Any]]:
    names = [
        f"{kind} {i}"
        for kind, (low, high) in scene.receptacles.items()
        for i in range(1, rng.randint(low, high) + 1)
    ]
    names.sort(key=display_key)
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
def all_tasks(config_json: str) -> dict[str, list[TaskSpec]]:
    config = AlfWorldConfig.model_validate_json(config_json)
    settings = config.model_dump(
        include={"task_types", "min_distractors", "max_distractors", "max_expert_steps"}
    )
    return generate_split_tasks("alfworld", config, partial(make_payload, **settings), problem_text)


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
