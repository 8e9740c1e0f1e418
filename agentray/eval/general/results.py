"""A suite's item results at a location: ``<suite>.jsonl``, one JSON line per scored item,
kept up to date while the suite runs so that an interrupted run resumes (``fresh=False``).

On a local disk (or a shared filesystem) each result is appended as soon as it is scored.
An object store cannot append, and rewriting one growing object after every item would
upload the results over and over; there each *batch* of new results is one whole object
``<suite>.jsonl.parts/<n>.jsonl``, written once ``flush_every`` results are buffered (or, at
the next result, once the oldest buffered one is ``flush_interval_s`` old). Reading takes
``<suite>.jsonl`` and then the parts in order (a later row of an id wins). When the suite
finishes, its results are written as the one ``<suite>.jsonl`` object and the parts are
removed; a run killed in between loses at most the batch it had not written.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from agentray import storage

FLUSH_EVERY = 32
FLUSH_INTERVAL_S = 30.0


def parts_of(location: str) -> str:
    return f"{location}.parts"


def read_results(location: str) -> list[dict[str, Any]]:
    """Every result stored at ``location`` (and its parts), one per id, first-seen order."""
    rows: dict[str, dict[str, Any]] = {}
    sources = [location] if storage.exists(location) else []
    sources += storage.list_files(parts_of(location), ".jsonl")
    for source in sources:
        for row in _parse(storage.read_text(source)):
            rows[row["id"]] = row
    return list(rows.values())


def _parse(text: str) -> list[dict[str, Any]]:
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line cut short by a killed run: that item runs again
            continue
    return rows


def _number(part: str) -> int:
    return int(storage.name(part).split(".")[0])


def _lines(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


class ResultsWriter:
    """Writes the results of one suite run to ``location``; ``kept``: the earlier results
    this run keeps (they replace whatever was stored)."""

    def __init__(
        self,
        location: str,
        kept: list[dict[str, Any]],
        flush_every: int = FLUSH_EVERY,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self.location = location
        self.rows = list(kept)
        self.flush_every = flush_every
        self.flush_interval_s = flush_interval_s
        # a local file is appended to, item by item; an object store gets batches
        self._append_to = None if storage.is_uri(location) else Path(storage.absolute(location))
        self._buffer: list[dict[str, Any]] = []
        self._oldest = 0.0
        self._consolidate()  # what is kept replaces what was stored (and a cut-off line)
        # parts a killed removal left behind are older: new ones sort after them
        self._parts = 1 + max((_number(p) for p in self._stored_parts()), default=-1)

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self._append_to is not None:
            with self._append_to.open("a") as f:
                f.write(json.dumps(row) + "\n")
            return
        if not self._buffer:
            self._oldest = time.monotonic()
        self._buffer.append(row)
        if len(self._buffer) >= self.flush_every or self._too_old():
            self._flush()

    def _too_old(self) -> bool:
        return time.monotonic() - self._oldest >= self.flush_interval_s

    def _stored_parts(self) -> list[str]:
        return storage.list_files(parts_of(self.location), ".jsonl")

    def _flush(self) -> None:
        if self._buffer:
            part = storage.join(parts_of(self.location), f"{self._parts:06d}.jsonl")
            storage.write_text(part, _lines(self._buffer))
            self._parts += 1
            self._buffer = []

    def _consolidate(self) -> None:
        storage.write_text(self.location, _lines(self.rows))
        storage.remove(parts_of(self.location))

    def close(self, finished: bool = True) -> None:
        """``finished``: the suite ran to its end (the results become one object); else
        only what is buffered is written, for the next run to resume from."""
        if self._append_to is not None:
            return
        if finished:
            self._consolidate()
        else:
            self._flush()
