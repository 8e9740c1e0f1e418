"""A round's agent data: the earlier rounds' kept trajectories and this round's explored
ones, reward-filtered as process filters them, deduplicated, at most K per task."""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections import Counter, defaultdict
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from agentray import storage
from agentray.collect import read_trajectories
from agentray.config import IterateConfig
from agentray.manifest import write_manifest
from agentray.process import ProcessConfig, classify_trajectory
from agentray.records import TRAJECTORY_SCHEMA, Trajectory

# a task's second, third ... kept trajectory: ``<task id>#<n>``, so process sees distinct ids
SAMPLE_SEP = "#"


def task_id_of(record: Trajectory) -> str:
    return record.id.split(SAMPLE_SEP, 1)[0]


def conversation_key(record: Trajectory) -> str:
    text = json.dumps([dict(t) for t in record.conversations], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def source_of(record: Trajectory) -> str:
    """``teacher``, or ``round-<k>`` for a trajectory the model of round k played."""
    model_round = record.policy.get("round")
    return "teacher" if model_round is None else f"round-{model_round}"


def merge_round(
    sources: list[dict[str, Any]],
    explored: list[dict[str, Any]],
    it: IterateConfig,
    process: ProcessConfig,
    out_dir: str,
) -> dict[str, Any]:
    """``sources`` (earlier data) and ``explored`` (this round's samples), each
    ``{"path": folder, ...lineage}``, into ``<out_dir>/trajectories``; writes the manifest
    and returns its counts."""
    started = time.time()
    counts: Counter[str] = Counter()
    explored_by_family: dict[str, Counter[str]] = defaultdict(Counter)
    ordered = [*sources, *explored] if it.prefer == "earliest" else [*explored, *sources]
    kept: list[Trajectory] = []
    per_task: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    for source in ordered:
        records = read_trajectories(source["path"])
        source["rows"] = len(records)
        source["kept"] = 0
        for record in records:
            counts["read"] += 1
            passed = not classify_trajectory(record, process)["reject_reason"]
            if source in explored:
                explored_by_family[record.task]["episodes"] += 1
                explored_by_family[record.task]["passed"] += int(passed)
            if not passed:
                counts["rejected_by_filter"] += 1
                continue
            task_id = task_id_of(record)
            key = (task_id, conversation_key(record))
            if key in seen:
                counts["duplicate_trajectory"] += 1
                continue
            seen.add(key)
            if per_task[task_id] >= it.keep_per_task:
                counts["over_keep_per_task"] += 1
                continue
            per_task[task_id] += 1
            n = per_task[task_id]
            kept.append(record.model_copy(update={"id": _numbered(task_id, n)}))
            source["kept"] += 1
    counts["kept"] = len(kept)
    out = storage.join(out_dir, "trajectories")
    _write(out, kept)
    summary = {
        **counts,
        "tasks": len(per_task),
        "kept_by_source": dict(Counter(source_of(r) for r in kept)),
        "exploration": {
            family: {**c, "success_rate": round(c["passed"] / c["episodes"], 3)}
            for family, c in explored_by_family.items()
            if c["episodes"]
        },
    }
    write_manifest(
        out_dir,
        "merge",
        it,
        inputs={
            "trajectories": [*sources, *explored],
            "process_filter": process.model_dump(mode="json"),
        },
        counts=summary,
        outputs={"trajectories": out},
        started_at=started,
    )
    return summary


def _numbered(task_id: str, n: int) -> str:
    return task_id if n == 1 else f"{task_id}{SAMPLE_SEP}{n}"


def _write(out: str, records: list[Trajectory]) -> None:
    """One parquet shard of ``records`` (an old shard of an interrupted merge is replaced)."""
    storage.makedirs(out)
    table = pa.Table.from_pylist([r.to_row() for r in records], schema=TRAJECTORY_SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    storage.write_bytes(storage.join(out, "part-00000.parquet"), buffer.getvalue())
