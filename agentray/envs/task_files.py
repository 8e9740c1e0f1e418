"""Tasks read from JSONL files (``task_files`` in a family config), e.g. written by
``agentray instruct``: local paths or URIs (``s3://...``), read through ``agentray.storage``."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import pyarrow.fs as pafs
from pydantic import Field, ValidationError

from agentray import storage
from agentray.types import TaskSpec


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


def _file_key(path: str) -> tuple[str, int | None, int | None]:
    location = storage.absolute(path)
    try:
        fs, inner = storage.filesystem(location)
        info = fs.get_file_info(inner)
    except OSError as e:
        raise ValueError(f"task file {path}: {e}") from None
    if info.type != pafs.FileType.File:
        problem = "No such file" if info.type == pafs.FileType.NotFound else "not a file"
        raise ValueError(f"task file {path}: {problem}")
    return location, info.mtime_ns, info.size


@lru_cache(maxsize=32)
def _read_task_file(
    path: str, mtime_ns: int | None, size: int | None
) -> tuple[tuple[str, TaskSpec], ...]:
    """(``file:line``, task) per non-blank line; cached until the file changes."""
    out = []
    # split on newlines only: str.splitlines would also split at U+2028 inside a string
    for number, line in enumerate(storage.read_text(path).split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            out.append((where, TaskSpec.model_validate_json(line)))
        except ValidationError as e:
            problem = "; ".join(
                f"{'.'.join(map(str, err['loc'])) or 'line'}: {err['msg']}" for err in e.errors()
            )
            raise ValueError(f"{where}: not a TaskSpec ({problem})") from None
    return tuple(out)
