"""Preference pairs from a round's exploration (ETO-style): for each task, an explored
trajectory the reward filter keeps (chosen) against one of the same task it rejects, with a
lower reward (rejected). Written as a standard preference dataset: ``prompt`` (the shared
opening messages, up to the last user turn both share), ``chosen`` and ``rejected`` (each
trajectory's continuation), all in the chat-messages format TRL's DPO trainer reads."""

from __future__ import annotations

import io
import json
import time
from collections import Counter, defaultdict
from itertools import product
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from agentray import storage
from agentray.collect import read_trajectories
from agentray.config import IterateConfig
from agentray.iterate.merge import conversation_key, task_id_of
from agentray.manifest import write_manifest
from agentray.process import ProcessConfig, classify_trajectory
from agentray.records import Trajectory, to_messages
from agentray.types import Status

_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
PAIR_SCHEMA = pa.schema(
    [
        ("prompt", _MESSAGES),
        ("chosen", _MESSAGES),
        ("rejected", _MESSAGES),
        ("task_id", pa.string()),
        ("family", pa.string()),
        ("chosen_id", pa.string()),
        ("rejected_id", pa.string()),
        ("chosen_reward", pa.float64()),
        ("rejected_reward", pa.float64()),
    ]
)


def messages_of(record: Trajectory) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in to_messages(record.conversations)]


def split_pair(
    chosen: list[dict[str, str]], rejected: list[dict[str, str]]
) -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict[str, str]]]:
    """``(prompt, chosen continuation, rejected continuation)``: the prompt is the longest
    shared opening that ends on a non-assistant turn, so both continuations start with the
    agent's reply. Raises ValueError for two identical conversations."""
    shared = 0
    for a, b in zip(chosen, rejected, strict=False):
        if a != b:
            break
        shared += 1
    while shared and chosen[shared - 1]["role"] == "assistant":
        shared -= 1
    if shared in (len(chosen), len(rejected)) or chosen[shared:] == rejected[shared:]:
        raise ValueError("the two conversations do not diverge after a shared prompt")
    return chosen[:shared], chosen[shared:], rejected[shared:]


def build_pairs(
    records: list[Trajectory], process: ProcessConfig, per_task: int
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The pairs of ``records`` (at most ``per_task`` a task) and their counts."""
    by_task: dict[str, dict[str, list[Trajectory]]] = defaultdict(lambda: defaultdict(list))
    counts: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    for record in records:
        if record.status == Status.TASK_ERROR:  # the infrastructure failed, not the agent
            counts["task_error_skipped"] += 1
            continue
        key = (task_id_of(record), conversation_key(record))
        if key in seen:
            counts["duplicate_trajectory"] += 1
            continue
        seen.add(key)
        passed = not classify_trajectory(record, process)["reject_reason"]
        by_task[key[0]]["chosen" if passed else "rejected"].append(record)
    pairs: list[dict[str, Any]] = []
    by_family: Counter[str] = Counter()
    for task_id, sides in by_task.items():
        made = _task_pairs(task_id, sides["chosen"], sides["rejected"], per_task)
        counts["tasks_with_pairs"] += bool(made)
        counts["tasks_only_chosen"] += bool(sides["chosen"] and not sides["rejected"])
        counts["tasks_only_rejected"] += bool(sides["rejected"] and not sides["chosen"])
        by_family.update(p["family"] for p in made)
        pairs += made
    return pairs, {**counts, "pairs": len(pairs), "tasks": len(by_task), "by_family": by_family}


def _task_pairs(
    task_id: str, chosen: list[Trajectory], rejected: list[Trajectory], per_task: int
) -> list[dict[str, Any]]:
    out = []
    for good, bad in product(chosen, rejected):
        if len(out) >= per_task:
            break
        if good.reward <= bad.reward:
            continue
        try:
            prompt, win, lose = split_pair(messages_of(good), messages_of(bad))
        except ValueError:
            continue
        out.append(
            {
                "prompt": prompt,
                "chosen": win,
                "rejected": lose,
                "task_id": task_id,
                "family": good.task,
                "chosen_id": good.id,
                "rejected_id": bad.id,
                "chosen_reward": float(good.reward),
                "rejected_reward": float(bad.reward),
            }
        )
    return out


def write_preference_pairs(
    explored: list[dict[str, Any]], it: IterateConfig, process: ProcessConfig, out_dir: str
) -> dict[str, Any]:
    """Pairs of the trajectories in ``explored`` (``{"path": folder, ...lineage}``) into
    ``<out_dir>/pairs.parquet`` and ``pairs.jsonl``; writes the manifest, returns counts."""
    started = time.time()
    records = [r for source in explored for r in read_trajectories(source["path"])]
    pairs, counts = build_pairs(records, process, it.pairs_per_task)
    counts["read"] = len(records)
    table = pa.Table.from_pylist(pairs, schema=PAIR_SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    parquet = storage.write_bytes(storage.join(out_dir, "pairs.parquet"), buffer.getvalue())
    jsonl = storage.write_text(
        storage.join(out_dir, "pairs.jsonl"), "".join(json.dumps(p) + "\n" for p in pairs)
    )
    write_manifest(
        out_dir,
        "pairs",
        it,
        inputs={
            "trajectories": explored,
            "process_filter": process.model_dump(mode="json"),
        },
        counts=counts,
        outputs={"parquet": parquet, "jsonl": jsonl},
        started_at=started,
    )
    return counts
