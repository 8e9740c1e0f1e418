"""Idempotent trajectory sink: one parquet shard per flush, on any storage (a local folder or
an object store prefix such as ``s3://bucket/run/collect/trajectories``).

Exactly-once without a rename (object stores have none), and retries without an overwrite:

- every shard is one all-or-nothing object (``storage.write_bytes``: a local file renamed
  into place, an S3 object visible only once its upload completed), so a killed driver
  leaves whole shards or none, and no temporary object under the folder;
- every shard has a name of its own, ``part-<time ns>-<random>.parquet``, so no write
  replaces another and sorted names follow the order of writing;
- the folder is append-only: a rerun reads what is there (``id_states``) and runs a task
  again only if its id has no record, or its record is a ``task_error`` below the attempt
  bound (``max_attempts``; 1 keeps errors frozen). The retry is written as a new row with
  ``attempt`` one higher, next to the error it supersedes, which is never deleted: a killed
  driver loses at most its unflushed buffer (redone on rerun), never a record;
- so an id may carry several rows, and every reader keeps one by the same rule
  (``agentray.records.replaces_kept``), reading rows in sorted shard order: the first row
  that is not a ``task_error`` stands for its id for good (a completed episode counts
  exactly once, even should two drivers ever write it at once), else the last row, the
  latest attempt. ``read_trajectories``, ``id_states`` / ``finished_ids`` (collect's
  resume, eval's reader) apply it here; the process stage applies it to its Ray Data read
  (``agentray.process.run``), which sees the folder as it is.

The folder is what ``ray.data.read_parquet(<folder>)`` reads (every name ends in
``.parquet``; nothing else is written there). Rows are ``Trajectory`` records, written with
the schema derived from the model and read back through ``Trajectory.from_row``. A shard
that cannot be read (truncated, corrupt) raises ``CorruptShardError`` naming it (defined
with its reader, ``read_trajectory_shard``, in ``agentray.records``, so that the process
stage, which may not import collect, can catch it too; ``agentray.collect`` exports it).
"""

from __future__ import annotations

import io
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from agentray import storage
from agentray.records import (
    TRAJECTORY_SCHEMA,
    Trajectory,
    read_trajectory_shard,
    replaces_kept,
)
from agentray.types import Status

_READ_THREADS = 8  # shards read at once: on an object store each read is a round trip
_KEY_COLUMNS = ["id", "status"]


def _shards(out_dir: str | Path, columns: list[str]) -> list[pa.Table]:
    """The folder's shards in sorted name order (read a few at a time)."""
    shards = storage.list_files(out_dir, ".parquet")
    if not shards:
        return []
    with ThreadPoolExecutor(min(_READ_THREADS, len(shards))) as pool:
        return list(pool.map(lambda shard: read_trajectory_shard(shard, columns), shards))


def _kept_rows(out_dir: str | Path, columns: list[str]) -> dict[str, dict[str, Any]]:
    """id -> the row that stands for it (``replaces_kept``), ids in first-written order."""
    kept: dict[str, dict[str, Any]] = {}
    for table in _shards(out_dir, columns):
        for row in table.to_pylist():
            old = kept.get(row["id"])
            if replaces_kept(old and old["status"]):
                kept[row["id"]] = row
    return kept


def id_states(out_dir: str | Path) -> dict[str, tuple[str, int]]:
    """id -> (status, attempt) of the record that stands for it in the folder."""
    rows = _kept_rows(out_dir, [*_KEY_COLUMNS, "attempt"])
    return {i: (row["status"], row.get("attempt") or 1) for i, row in rows.items()}


def finished_ids(out_dir: str | Path, max_attempts: int = 1) -> set[str]:
    """The ids a rerun with ``max_attempts`` does not run again: those with a record, less
    the ``task_error`` ones below ``max_attempts`` attempts (1, the default: every id with a
    record)."""
    return {
        i
        for i, (status, attempt) in id_states(out_dir).items()
        if status != Status.TASK_ERROR.value or attempt >= max_attempts
    }


def read_trajectories(out_dir: str | Path) -> list[Trajectory]:
    """Every record in the folder, one per id: the first that is not a ``task_error``, else
    the latest attempt. Only the model's columns are read: columns of older runs, such as
    ``response_token_ids``, are ignored."""
    rows = _kept_rows(out_dir, TRAJECTORY_SCHEMA.names)
    return [Trajectory.from_row(row) for row in rows.values()]


def shard_name() -> str:
    return f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.parquet"


class ParquetSink:
    """Buffers finished episodes and writes them as shards under ``out_dir`` (a path or URI).

    ``next_attempt(id)`` says whether a task still runs (and as which attempt): an id with no
    record yet runs as attempt 1, a ``task_error`` below ``max_attempts`` as its attempt + 1;
    ``add`` keeps a record only if it is that attempt, so one record per id and sink.
    ``written`` holds every id with a record, in the folder or buffered. A shard is written
    every ``flush_every`` records, or at the next ``add`` once the oldest buffered record is
    ``flush_interval_s`` old, and on ``flush``.
    """

    def __init__(
        self,
        out_dir: str | Path,
        flush_every: int = 64,
        flush_interval_s: float | None = None,
        max_attempts: int = 1,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, not {max_attempts}")
        self.out_dir = storage.absolute(out_dir)
        storage.makedirs(self.out_dir)
        self.flush_every = flush_every
        self.flush_interval_s = flush_interval_s
        self.max_attempts = max_attempts
        self._states = id_states(self.out_dir)
        self.written = set(self._states)
        self._added: set[str] = set()
        self.shards_written = 0
        self._buffer: list[dict[str, Any]] = []
        self._oldest = 0.0

    def next_attempt(self, task_id: str) -> int | None:
        """The attempt a run of ``task_id`` would be, or None if it must not run (recorded
        by this sink, not a task_error, or out of attempts)."""
        if task_id in self._added:
            return None
        if task_id not in self._states:
            return 1
        status, attempt = self._states[task_id]
        if status != Status.TASK_ERROR.value or attempt >= self.max_attempts:
            return None
        return attempt + 1

    def add(self, record: Trajectory) -> bool:
        """Queue a finished episode; False (not kept) unless ``record.attempt`` is the id's
        ``next_attempt``: an id already recorded is kept once."""
        if not isinstance(record, Trajectory):
            raise TypeError(f"ParquetSink.add takes a Trajectory, not {type(record).__name__}")
        if record.attempt != self.next_attempt(record.id):
            return False
        self._added.add(record.id)
        self.written.add(record.id)
        if not self._buffer:
            self._oldest = time.monotonic()
        self._buffer.append(record.to_row())
        if len(self._buffer) >= self.flush_every or self._too_old():
            self.flush()
        return True

    def _too_old(self) -> bool:
        return (
            self.flush_interval_s is not None
            and time.monotonic() - self._oldest >= self.flush_interval_s
        )

    def flush(self) -> None:
        if not self._buffer:
            return
        data = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(self._buffer, schema=TRAJECTORY_SCHEMA), data)
        storage.write_bytes(storage.join(self.out_dir, shard_name()), data.getvalue())
        self._buffer = []
        self.shards_written += 1
