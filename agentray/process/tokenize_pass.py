"""The process stage's one Ray Data pass: the tokenizer over the kept agent records and the
general records the mix draws, in batch tasks whose workers keep their tokenizer loaded."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from agentray.process.config import ProcessConfig
from agentray.process.inputs import ProcessError
from agentray.process.tokenize import (
    TRAIN_COLUMNS,
    tokenize_batch,
    warm_tokenizer,
)


def blocks_for(n: int) -> int:
    """Blocks for ``n`` inputs: a few per CPU (every core gets work, and a slow block does
    not hold up the end), never more than the inputs (each block costs a task)."""
    import ray

    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    return max(1, min(n, 4 * cpus))


def fetch_arrow(ds):
    """The dataset's rows on the driver as one Arrow table: a single execution."""
    import pyarrow as pa
    import ray

    tables = [t for t in ray.get(ds.to_arrow_refs()) if t.num_rows]
    return pa.concat_tables(tables, promote_options="default") if tables else pa.table({})


def tokenize_records(
    agent: list[dict], general: dict[str, str], order: list[str], cfg: ProcessConfig
):
    """The kept agent records and, in the same pass, the general records (in their seeded
    draw ``order``) the mix is expected to need, tokenized; further rounds only when the
    tokenizer set aside more than expected. Returns (the examples as an Arrow table,
    (id, tokens) per source for the mix plan (general in draw order), the rejected rows)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    items = [{k: r[k] for k in ("id", "source", "family", "conversations")} for r in agent]
    taken = _first_draw(agent, general, order, cfg)
    tables = [_tokenize_items(items + _general_items(general, order[:taken]), cfg)]
    while True:
        table = pa.concat_tables(tables)
        kept = table.filter(pc.equal(table["reject_reason"], ""))
        meta = _meta(kept, order)
        if not meta["agent"]:
            rejected = table.filter(pc.not_equal(table["reject_reason"], ""))
            reasons = reason_counts(rejected.select(["reject_reason"]).to_pylist())
            raise ProcessError(f"no agent record fits max_seq_len={cfg.max_seq_len}: {reasons}")
        need = _general_need(meta["agent"], cfg)
        have = _size(meta["general"], cfg)
        if taken >= len(order) or have >= need:
            break
        per_record = max(have / max(taken, 1), 1e-9)
        room = math.inf if math.isinf(need) else (need - have) / per_record
        batch = order[taken : taken + int(min(len(order), room * 1.25 + 8))]
        taken += len(batch)
        tables.append(_tokenize_items(_general_items(general, batch), cfg))
    rejected = table.filter(pc.not_equal(table["reject_reason"], ""))
    reported = rejected.select(["source", "id", "family", "reject_reason"]).to_pylist()
    return kept.drop_columns(["reject_reason"]), meta, reported


def _first_draw(agent: list[dict], general: dict[str, str], order: list[str], cfg) -> int:
    """How many general records (in draw order) the first pass tokenizes: what the mix
    needs beside the agent records kept so far (in records, or mixing by tokens in
    characters of text as a stand-in for tokens), a quarter more and a few."""
    if cfg.eta >= 1:
        return 0
    if cfg.balance == "upsample_agent":
        return len(order)
    share = (1 - cfg.eta) / cfg.eta
    if cfg.mix_by == "examples":
        need = len(agent) * share
        if cfg.max_general_records is not None:
            need = min(need, cfg.max_general_records)
        return min(len(order), int(need * 1.25) + 8)
    target = 1.25 * share * sum(len(r["conversations"]) for r in agent)
    total, n = 0, 0
    while n < len(order) and total < target:
        total += len(general[order[n]])
        n += 1
    return min(len(order), n + 8)


def _general_items(general: dict[str, str], ids: list[str]) -> list[dict[str, Any]]:
    return [
        {"id": i, "source": "general", "family": "general", "conversations": general[i]}
        for i in ids
    ]


def _tokenize_items(items: list[dict[str, Any]], cfg: ProcessConfig):
    """One Ray Data pass of the tokenizer over ``items``, fetched as Arrow. Items are dealt
    round-robin into blocks, so long agent records spread over the workers; ``seq`` (the
    item's place) picks the records checked against the template."""
    import ray

    if not items:
        return _empty_examples()
    items = [item | {"seq": k} for k, item in enumerate(items)]
    n_blocks = blocks_for(len(items))
    dealt = [item for b in range(n_blocks) for item in items[b::n_blocks]]
    ds = ray.data.from_items(dealt, override_num_blocks=n_blocks)
    return fetch_arrow(ds.map_batches(**_tokenizer_stage(cfg)))


def _empty_examples():
    import pyarrow as pa

    types = {"input_ids": pa.list_(pa.int64()), "labels": pa.list_(pa.int64())}
    types |= {"num_tokens": pa.int64(), "num_loss_tokens": pa.int64(), "truncated": pa.bool_()}
    columns = (*TRAIN_COLUMNS, "reject_reason")
    return pa.table({k: pa.array([], type=types.get(k, pa.string())) for k in columns})


def _meta(kept, order: list[str]) -> dict[str, list[tuple[str, int]]]:
    """(id, tokens) per source: agent by id, general in draw order (pieces in order)."""
    rank = {record_id: i for i, record_id in enumerate(order)}
    rows = kept.select(["id", "source", "num_tokens"]).to_pylist()
    agent = sorted((r["id"], int(r["num_tokens"])) for r in rows if r["source"] == "agent")
    general = [(r["id"], int(r["num_tokens"])) for r in rows if r["source"] == "general"]
    general.sort(key=lambda m: (rank[m[0].split("#")[0]], _piece(m[0])))
    return {"agent": agent, "general": general}


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


def _tokenizer_kwargs(cfg: ProcessConfig) -> dict[str, Any]:
    return {
        "model": cfg.model,
        "max_seq_len": cfg.max_seq_len,
        "chat_template": cfg.chat_template,
        "too_long": {"agent": "cut", "general": cfg.general_too_long},
        "verify_every": cfg.verify_template_every,
    }


def warm_tokenizers(cfg: ProcessConfig) -> list:
    """Have ``tokenize_workers`` worker processes load the tokenizer now, while the driver
    reads the records, so the tokenizer pass starts on warm workers. Returns the tasks:
    the pass waits for them (it would otherwise start while they hold the CPUs)."""
    import ray

    # a worker that dies is retried (Ray's default); an exception (the tokenizer does not
    # load) is not, and shows with its reason at once
    warm = ray.remote(warm_tokenizer)
    return [warm.remote(**_tokenizer_kwargs(cfg)) for _ in range(cfg.tokenize_workers)]


def _tokenizer_stage(cfg: ProcessConfig) -> dict[str, Any]:
    from ray.data import TaskPoolStrategy

    return {
        "fn": tokenize_batch,
        "fn_kwargs": _tokenizer_kwargs(cfg),
        # pyarrow batches in, columns of Python lists out (no pandas/numpy round trip);
        # a block is one batch (_tokenize_items sizes the blocks)
        "batch_format": "pyarrow",
        "batch_size": None,
        "compute": TaskPoolStrategy(size=cfg.tokenize_workers),
    }


def reason_counts(rows: list[dict]) -> dict[str, int]:
    """How many rows were set aside for each ``reject_reason``."""
    return dict(Counter(r["reject_reason"] for r in rows))
