"""Idempotent trajectory sink: one parquet shard per flush, atomically renamed into place.

A finished episode is written once; a rerun over the same folder reads the ids already
there and skips them, so a killed driver loses at most the unflushed buffer (redone on
rerun) and never writes an id twice. Rows are ``Trajectory`` records, written with the
schema derived from the model and read back through ``Trajectory.from_row``.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from agentray.records import TRAJECTORY_SCHEMA, Trajectory


def finished_ids(out_dir: str | Path) -> set[str]:
    out = Path(out_dir)
    if not out.exists():
        return set()
    ids: set[str] = set()
    for shard in sorted(out.glob("*.parquet")):
        ids.update(pq.read_table(shard, columns=["id"]).column("id").to_pylist())
    return ids


def read_trajectories(out_dir: str | Path) -> list[Trajectory]:
    """Every record in the folder (only the model's columns are read: columns of older
    runs, such as ``response_token_ids``, are ignored)."""
    records: list[Trajectory] = []
    for shard in sorted(Path(out_dir).glob("*.parquet")):
        table = pq.read_table(shard, columns=TRAJECTORY_SCHEMA.names)
        records.extend(Trajectory.from_row(row) for row in table.to_pylist())
    return records


class ParquetSink:
    """Buffers finished episodes and writes them as shards.

    ``written`` holds every id already in the folder or buffered: ``add`` keeps one record
    per id. A shard is written every ``flush_every`` records, or at the next ``add`` once
    the oldest buffered record is ``flush_interval_s`` old, and on ``flush``.
    """

    def __init__(
        self, out_dir: str | Path, flush_every: int = 64, flush_interval_s: float | None = None
    ) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
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
        table = pa.Table.from_pylist(self._buffer, schema=TRAJECTORY_SCHEMA)
        name = f"part-{uuid.uuid4().hex[:12]}.parquet"
        tmp = self.out_dir / f".{name}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.out_dir / name)
        self._buffer = []
        self.shards_written += 1
