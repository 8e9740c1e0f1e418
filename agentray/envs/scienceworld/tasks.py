"""Tasks from ScienceWorld's variations (gold paths recorded), cached on disk."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path
from typing import Any

from agentray.envs.generate import built_once, tasks_from_payloads
from agentray.envs.scienceworld.config import ScienceWorldConfig
from agentray.envs.scienceworld.prompt import ACTION_LINE, DEMO_DONE
from agentray.envs.scienceworld.simulators import SIMULATORS
from agentray.types import Message, TaskSpec


def parse_action(reply: str) -> str | None:
    """The command of the first ``Action:`` line, or None when there is none (or it is empty)."""
    match = ACTION_LINE.search(reply)
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


@built_once
def _built(config_json: str) -> dict[str, Any]:
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


def tasks_by_split(built: dict[str, Any]) -> dict[str, list[TaskSpec]]:
    return tasks_from_payloads("scienceworld", built["train"], built["test"], "variation")


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
