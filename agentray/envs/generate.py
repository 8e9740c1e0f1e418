"""Building a family's train and test tasks: seeded generation with unique problem texts,
or payloads the family built itself."""

from __future__ import annotations

import functools
import hashlib
import random
import threading
from collections.abc import Callable
from itertools import count
from typing import Any, TypeVar

from agentray.envs.base import FamilyConfig
from agentray.types import TaskSpec


def split_tasks(tasks_by_split: dict[str, list[TaskSpec]], split: str) -> list[TaskSpec]:
    """Copies of one split's tasks (callers may mutate them; the cached originals stay)."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; expected train or test")
    return [t.model_copy(deep=True) for t in tasks_by_split[split]]


def tasks_from_payloads(
    family: str,
    train: list[dict[str, Any]],
    test: list[dict[str, Any]],
    seed_key: str,
) -> dict[str, list[TaskSpec]]:
    """Train and test TaskSpecs with ids ``family_0..``, test ids after train ids, from
    payloads a family built itself (``payload[seed_key]`` is the task's seed)."""
    return {
        split: [
            TaskSpec(
                id=f"{family}_{offset + i}",
                family=family,
                split=split,
                seed=payload[seed_key],
                payload=payload,
            )
            for i, payload in enumerate(payloads)
        ]
        for split, payloads, offset in (("train", train, 0), ("test", test, len(train)))
    }


class Redraw(Exception):
    """A generator drew a degenerate task (a tie, an empty answer): draw again."""


def task_seed(family: str, seed: int, split: str, index: int, attempt: int) -> int:
    digest = hashlib.sha256(f"{family}:{seed}:{split}:{index}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:6], "big")


def generate_split_tasks(
    family: str,
    config: FamilyConfig,
    make_payload: Callable[[random.Random], dict[str, Any]],
    problem_text: Callable[[dict[str, Any]], str],
) -> dict[str, list[TaskSpec]]:
    """Train and test tasks with ids ``family_0..``; test ids continue after train ids.

    Each task comes from its own split-specific seed, so a task does not change when another
    split grows; a draw whose problem text repeats an earlier one (of either split) is
    redrawn, which keeps problem texts unique, as the TaskIndex needs.
    """
    seen: set[str] = set()
    out: dict[str, list[TaskSpec]] = {"train": [], "test": []}
    for split, n, offset in (("train", config.n_train, 0), ("test", config.n_test, config.n_train)):
        for index in range(n):
            seed, payload = _unique_draw(
                family, config.seed, split, index, make_payload, problem_text, seen
            )
            out[split].append(
                TaskSpec(
                    id=f"{family}_{offset + index}",
                    family=family,
                    split=split,
                    seed=seed,
                    payload=payload,
                )
            )
    return out


def _unique_draw(family, base_seed, split, index, make_payload, problem_text, seen):
    for attempt in count():
        if attempt >= 200:
            raise RuntimeError(f"could not draw a unique {family} task for {split} #{index}")
        seed = task_seed(family, base_seed, split, index, attempt)
        try:
            payload = make_payload(random.Random(seed))
        except Redraw:
            continue
        key = problem_text(payload)
        if key not in seen:
            seen.add(key)
            return seed, payload
    raise AssertionError("unreachable")


T = TypeVar("T")


def built_once(build: Callable[[str], T]) -> Callable[[str], T]:
    """``build(config_json)`` run once per config and kept (eight configs at most), also
    when an EnvPool's threads ask for it at the same time."""
    lock = threading.Lock()
    cached = functools.lru_cache(maxsize=8)(build)

    @functools.wraps(build)
    def built(config_json: str) -> T:
        with lock:
            return cached(config_json)

    return built
