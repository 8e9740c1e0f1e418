"""Writing the process stage's outputs: the training set (packed or not), parquet and
JSONL files, all-or-nothing on a local disk or an object store."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from agentray import storage
from agentray.model.packing import pack_batch
from agentray.process.config import ProcessConfig
from agentray.process.tokenize import (
    TRAIN_COLUMNS,
)


def write_train_set(examples, cfg: ProcessConfig, train_dir: str) -> dict[str, Any] | None:
    """The examples, or their packs when packing is on; returns the packing figures."""
    if not cfg.packing.enabled:
        write_table(examples.select(list(TRAIN_COLUMNS)), train_dir)
        return None
    import pyarrow as pa
    import pyarrow.compute as pc

    width = cfg.packing.max_seq_len or cfg.max_seq_len
    rows = examples.select(["id", "source", "input_ids", "labels"])
    step = cfg.packing.batch_rows
    kwargs = {"strategy": cfg.packing.strategy, "split_long": cfg.packing.split_long}
    packs = [
        pa.table(pack_batch(rows.slice(start, step).to_pydict(), max_seq_len=width, **kwargs))
        for start in range(0, rows.num_rows, step)
    ]
    table = pa.concat_tables(packs)
    write_table(table, train_dir)
    real = pc.sum(table["num_tokens"]).as_py() or 0
    return {
        "packs": table.num_rows,
        "width": width,
        "strategy": cfg.packing.strategy,
        "efficiency": real / (table.num_rows * width) if table.num_rows else 0.0,
    }


def write_parquet(ds, location: str) -> None:
    """Replace ``location`` as a whole, so a rerun never mixes old and new files.

    On a local (or shared) disk the shards are written beside it and renamed into place.
    An object store has no rename, and copying every shard from a temporary prefix would
    upload them twice, so there the old shards are deleted and the new ones written in
    place: the stage's manifest, deleted when the stage starts and written last, is what
    marks them complete (the train stage keeps reading ``process/train``, no indirection)."""
    if storage.is_uri(location):
        storage.remove(location)
        ds.write_parquet(location)
        return
    target = Path(location)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        ds.write_parquet(str(tmp))
        storage.publish_dir(tmp, location)
    finally:
        storage.remove(tmp)


def write_table(table, location: str, rows_per_file: int = 1024) -> None:
    """``_write_parquet`` of an Arrow table held by the driver: files of ``rows_per_file``
    rows (the train stage reads them in parallel), ``location`` replaced as a whole."""
    import pyarrow.parquet as pq

    def write(folder: str) -> None:
        fs, path = storage.filesystem(folder)
        fs.create_dir(path, recursive=True)
        for k, start in enumerate(range(0, max(table.num_rows, 1), rows_per_file)):
            part = table.slice(start, rows_per_file)
            pq.write_table(part, f"{path}/part-{k:05d}.parquet", filesystem=fs)

    if storage.is_uri(location):
        storage.remove(location)
        write(location)
        return
    target = Path(location)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        write(str(tmp))
        storage.publish_dir(tmp, location)
    finally:
        storage.remove(tmp)


def write_jsonl(location: str, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    storage.write_text(location, text)
