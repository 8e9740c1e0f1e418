"""Idempotent trajectory sink: one parquet shard per flush, on any storage (a local folder or
an object store prefix such as ``s3://bucket/run/collect/trajectories``).

Exactly-once without a rename (object stores have none):

- every shard is one all-or-nothing object (``storage.write_bytes``: a local file renamed
  into place, an S3 object visible only once its upload completed), so a killed driver
  leaves whole shards or none, and no temporary object under the folder;
- every shard has a name of its own, ``part-<time ns>-<random>.parquet``, so no write
  replaces another and sorted names follow the order of writing;
- a rerun over the same folder reads the ids already there and skips them, so a killed
  driver loses at most its unflushed buffer (redone on rerun);
- the readers here keep one row per id, the first in sorted shard order: should two
  drivers ever run over the same folder at once, an id they both wrote still counts once.

The folder is what ``ray.data.read_parquet(<folder>)`` reads (every name ends in
``.parquet``; nothing else is written there). Rows are ``Trajectory`` records, written with
the schema derived from the model and read back through ``Trajectory.from_row``.
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
from agentray.records import TRAJECTORY_SCHEMA, Trajectory

_READ_THREADS = 8  # shards read at once: on an object store each read is a round trip


def _shards(out_dir: str | Path, columns: list[str]) -> list[pa.Table]:
    """The folder's shards in sorted name order (read a few at a time)."""
    shards = storage.list_files(out_dir, ".parquet")
    if not shards:
        return []

    def read(shard: str) -> pa.Table:
        fs, path = storage.filesystem(shard)
        return pq.read_table(path, filesystem=fs, columns=columns)

    with ThreadPoolExecutor(min(_READ_THREADS, len(shards))) as pool:
        return list(pool.map(read, shards))


def finished_ids(out_dir: str | Path) -> set[str]:
    ids: set[str] = set()
    for table in _shards(out_dir, ["id"]):
        ids.update(table.column("id").to_pylist())
    return ids


def read_trajectories(out_dir: str | Path) -> list[Trajectory]:
    """Every record in the folder, one per id (the first in sorted shard order). Only the
    model's columns are read: columns of older runs, such as ``response_token_ids``, are
    ignored."""
    records: list[Trajectory] = []
    seen: set[str] = set()
    for table in _shards(out_dir, TRAJECTORY_SCHEMA.names):
        for row in table.to_pylist():
            if row["id"] not in seen:
                seen.add(row["id"])
                records.append(Trajectory.from_row(row))
    return records


def shard_name() -> str:
    return f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.parquet"


class ParquetSink:
    """Buffers finished episodes and writes them as shards under ``out_dir`` (a path or URI).

    ``written`` holds every id already in the folder or buffered: ``add`` keeps one record
    per id. A shard is written every ``flush_every`` records, or at the next ``add`` once
    the oldest buffered record is ``flush_interval_s`` old, and on ``flush``.
    """

    def __init__(
        self, out_dir: str | Path, flush_every: int = 64, flush_interval_s: float | None = None
    ) -> None:
        self.out_dir = storage.absolute(out_dir)
        storage.makedirs(self.out_dir)
        self.flush_every = flush_every
        self.flush_interval_s = flush_interval_s
        self.written = finished_ids(self.out_dir)
        self.shards_written = 0
        self._buffer: list[dict[str, Any]] = []
        self._oldest = 0.0

    def add(self, record: Trajectory) -> bool:
        """Queue a finished episode; False if its id was already written (kept once)."""
        if not isinstance(record, Trajectory):
            raise TypeError(f"ParquetSink.add takes a Trajectory, not {type(record).__name__}")
        if record.id in self.written:
            return False
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
