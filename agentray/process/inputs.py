"""Reading the stage's input files: only the files named, record by record, with whatever
cannot be read set aside with its place and reason.

- A trajectory shard is checked by its footer alone (``pyarrow.parquet.read_metadata``, a
  few reads from the end of the file, a handful of shards at a time) before Ray Data is
  given the list of good ones: a truncated shard would otherwise fail the whole read, deep
  inside Ray Data, without its name.
- A JSONL file is parsed line by line: a malformed line is one ``BadInput`` with its file
  and line number, the other lines are read as usual.
- A file that cannot be read as a whole (a truncated parquet file, a JSON array that does
  not parse) is one ``BadInput`` without a line; the stage fails on it naming the file,
  or sets it aside when ``process.quarantine_bad_shards`` is on (``set_aside``).

Nothing here lists a folder that was not named (``datasets``' json builder, which Ray's
``from_huggingface`` calls, parses every JSON file under the working directory).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from agentray import storage

RECORD_SUFFIXES = (".jsonl", ".json", ".parquet")
_FOOTER_THREADS = 16  # footers checked at once: on an object store each one is a round trip


class ProcessError(RuntimeError):
    """The inputs cannot make a training set (the message says why, in one line)."""


@dataclass(frozen=True)
class BadInput:
    """An input that could not be read: a line of a file, or (``line`` None) a whole file."""

    file: str
    reason: str
    line: int | None = None

    def row(self, source: str) -> dict[str, Any]:
        """Its line in ``rejected.jsonl`` (``source``: agent or general)."""
        place = {"file": self.file} | ({"line": self.line} if self.line is not None else {})
        return {"source": source, **place, "reason": self.reason}

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where} ({self.reason})"


def record_files(paths: list[str], what: str = "input") -> list[str]:
    """The ``.jsonl`` / ``.json`` / ``.parquet`` files among ``paths`` (files or folders,
    local or URIs; a folder is searched, hidden files left out), in a stable order;
    FileNotFoundError (``what`` not found) for a path that does not exist."""
    found: list[str] = []
    for location in paths:
        if not storage.exists(location):
            raise FileNotFoundError(f"{what} not found: {location}")
        found += [f for f in storage.list_files(location) if f.endswith(RECORD_SUFFIXES)]
    if not found:
        raise FileNotFoundError(f"{what}: no .jsonl/.json/.parquet files in {paths}")
    return found


def read_records(location: str) -> Iterator[tuple[int, Any] | BadInput]:
    """``(number, record)`` for each record of one file (number: the line of a JSONL file,
    the position in a JSON array or a parquet table, from 1), and a ``BadInput`` for each
    line or file that cannot be read."""
    if location.endswith(".parquet"):
        yield from _parquet_records(location)
        return
    data = storage.read_bytes(location)
    if location.endswith(".json") and data.lstrip()[:1] == b"[":
        yield from _json_array_records(location, data)
        return
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            yield _json_line(location, number, raw)


def _json_line(location: str, number: int, raw: bytes) -> tuple[int, Any] | BadInput:
    try:
        record = json.loads(raw)
    except UnicodeDecodeError:
        return BadInput(location, "malformed line: not UTF-8 text", number)
    except json.JSONDecodeError as e:
        return BadInput(location, f"malformed JSON: {e.msg}", number)
    if not isinstance(record, dict):
        return BadInput(location, f"malformed line: a JSON {type(record).__name__}", number)
    return number, record


def _json_array_records(location: str, data: bytes) -> Iterator[tuple[int, Any] | BadInput]:
    try:
        records = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        yield BadInput(location, f"malformed JSON array: {_one_line(e)}")
        return
    for number, record in enumerate(records, start=1):
        if isinstance(record, dict):
            yield number, record
        else:
            yield BadInput(location, f"malformed record: a JSON {type(record).__name__}", number)


def _parquet_records(location: str) -> Iterator[tuple[int, Any] | BadInput]:
    import pyarrow.parquet as pq

    fs, path = storage.filesystem(location)
    try:
        rows = pq.read_table(path, filesystem=fs).to_pylist()
    except (OSError, ValueError) as e:  # ArrowInvalid is a ValueError
        yield BadInput(location, f"unreadable parquet: {_one_line(e)}")
        return
    yield from enumerate(rows, start=1)


def check_shards(shards: list[str], columns: list[str]) -> tuple[list[str], list[BadInput]]:
    """(readable shards, unreadable ones): each shard's footer is read, and its schema must
    hold ``columns``. Cheap: no data page is read."""
    if not shards:
        return [], []
    with ThreadPoolExecutor(min(_FOOTER_THREADS, len(shards))) as pool:
        problems = list(pool.map(lambda shard: _shard_problem(shard, columns), shards))
    good = [shard for shard, problem in zip(shards, problems, strict=True) if problem is None]
    bad = [BadInput(s, p) for s, p in zip(shards, problems, strict=True) if p is not None]
    return good, bad


def _shard_problem(shard: str, columns: list[str]) -> str | None:
    import pyarrow.parquet as pq

    fs, path = storage.filesystem(shard)
    try:
        with fs.open_input_file(path) as f:
            names = pq.read_metadata(f).schema.to_arrow_schema().names
    except (OSError, ValueError) as e:
        return f"unreadable parquet: {_one_line(e)}"
    missing = [c for c in columns if c not in names]
    return f"not a trajectory shard: no column {', '.join(missing)}" if missing else None


def set_aside(bad: list[BadInput], quarantine: bool) -> None:
    """Raises ProcessError naming the files that cannot be read as a whole, unless
    ``quarantine`` (then they go to ``rejected.jsonl`` with the lines that could not)."""
    whole = [b for b in bad if b.line is None]
    if whole and not quarantine:
        shown = "; ".join(str(b) for b in whole[:3])
        more = f" and {len(whole) - 3} more" if len(whole) > 3 else ""
        raise ProcessError(
            f"{len(whole)} unreadable input file{'s' if len(whole) > 1 else ''}: {shown}{more}; "
            "set process.quarantine_bad_shards: true to set such files aside "
            "(into rejected.jsonl) and go on without them"
        )


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split()) or type(error).__name__
