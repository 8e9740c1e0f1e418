"""The Env contract: AgentBench's Task plus a gym-style step.

An env family owns its prompt (``reset`` returns the opening turns: instruction, 1-shot
demonstration with ``loss: False`` on its assistant turns, then the problem), its action
parser and its scorer. One instance runs one episode at a time; instances are cheap and
isolated so hundreds can run at once.

The scripted expert (the offline teacher) is part of the family: ``expert_actions(task)``
returns the full, deterministic action sequence that solves ``task``. Because it depends on
the task alone, any process that can rebuild the task (the expert policy, the test
endpoint) can replay it from a conversation.
"""

from __future__ import annotations

import hashlib
import random
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import lru_cache
from itertools import count
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentray.types import Message, Status, StepResult, TaskSpec


class FamilyConfig(BaseModel):
    """Per-family settings; families subclass this with their own fields."""

    model_config = ConfigDict(extra="forbid")

    n_train: int = 50
    n_test: int = 20
    seed: int = 0
    max_rounds: int = 15


class Env(ABC):
    name: ClassVar[str]
    version: ClassVar[str] = "1"
    config_cls: ClassVar[type[FamilyConfig]] = FamilyConfig

    def __init__(self, config: FamilyConfig | None = None) -> None:
        self.config = config or self.config_cls()

    @abstractmethod
    def tasks(self, split: str) -> list[TaskSpec]:
        """All tasks of a split ("train" or "test"), with stable ids."""

    @abstractmethod
    def prompt(self, task: TaskSpec) -> list[Message]:
        """The opening turns for ``task`` (ending with a user turn); pure, no side effects."""

    @abstractmethod
    def reset(self, task: TaskSpec) -> list[Message]:
        """Start an episode (build its state) and return ``self.prompt(task)``."""

    @abstractmethod
    def step(self, action: str) -> StepResult:
        """Apply the agent's full reply; a malformed one is a status, never an exception."""

    @staticmethod
    def action_problem(reply: str) -> str | None:
        """Why ``reply`` (one agent turn) does not parse in this family's action format, or
        None when it does. The process stage drops trajectories with such turns."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources held by the current episode."""

    @abstractmethod
    def expert_actions(self, task: TaskSpec) -> list[str]:
        """The scripted expert's replies that solve ``task``, in order."""

    def _finish(
        self, status: Status, reward: float, observation: str | None, info: dict
    ) -> StepResult:
        """End the running episode with its final status and reward."""
        self._done = True
        return StepResult(
            observation=observation, done=True, reward=reward, status=status, info=info
        )

    @staticmethod
    def problem_of(messages: list[Message]) -> str:
        """The text that identifies the task in a conversation: the last opening user turn.

        Families whose problem text is elsewhere override this.
        """
        return first_user_after_demo(messages)


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


def no_episode_result() -> StepResult:
    """What ``step`` returns outside a running episode: a task error, never an exception."""
    return StepResult(
        observation=None,
        done=True,
        status=Status.TASK_ERROR,
        info={"error": "step() without a running episode; call reset() first"},
    )


def first_user_after_demo(messages: list[Message]) -> str:
    """The first user turn after the last demonstration (``loss: False``) turn."""
    last_demo = max((i for i, m in enumerate(messages) if m.get("loss") is False), default=-1)
    for m in messages[last_demo + 1 :]:
        if m["role"] == "user":
            return m["content"]
    raise ValueError("conversation has no user turn after the demonstration")


# ---------------------------------------------------------------- seeded task generation


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


# ---------------------------------------------------------------- tasks from files


def task_files_field() -> Any:
    """The ``task_files`` field of a family config that reads extra tasks from files."""
    return Field(
        default_factory=list,
        description="JSONL files of extra tasks (one TaskSpec per line, e.g. written by "
        "`agentray instruct`), added to the split each task names",
    )


def file_tasks(family: str, paths: list[str], split: str) -> list[TaskSpec]:
    """The tasks of ``split`` in ``paths`` (copies). Raises ValueError naming the file and
    line of a malformed task, a task of another family, an id shaped like a procedural one
    (``family_<n>``, which would collide) or an id repeated across the files."""
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; expected train or test")
    seen: dict[str, str] = {}
    out: list[TaskSpec] = []
    for path in paths:
        for where, task in _read_task_file(*_file_key(path)):
            if task.family != family:
                raise ValueError(f"{where}: a {task.family!r} task in {family!r} task_files")
            if re.fullmatch(rf"{re.escape(family)}_\d+", task.id):
                raise ValueError(
                    f"{where}: id {task.id!r} has the form of the procedural tasks' ids "
                    f"({family}_<n>); use another, e.g. {family}_gen_<n>"
                )
            if task.id in seen:
                raise ValueError(f"{where}: id {task.id!r} repeats {seen[task.id]}")
            seen[task.id] = where
            if task.split == split:
                out.append(task.model_copy(deep=True))
    return out


def _file_key(path: str) -> tuple[str, int, int]:
    resolved = Path(path).expanduser().resolve()
    try:
        stat = resolved.stat()
    except OSError as e:
        raise ValueError(f"task file {path}: {e.strerror or e}") from None
    return str(resolved), stat.st_mtime_ns, stat.st_size


@lru_cache(maxsize=32)
def _read_task_file(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, TaskSpec], ...]:
    """(``file:line``, task) per non-blank line; cached until the file changes."""
    out = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                out.append((where, TaskSpec.model_validate_json(line)))
            except ValidationError as e:
                problem = "; ".join(
                    f"{'.'.join(map(str, err['loc'])) or 'line'}: {err['msg']}"
                    for err in e.errors()
                )
                raise ValueError(f"{where}: not a TaskSpec ({problem})") from None
    return tuple(out)
