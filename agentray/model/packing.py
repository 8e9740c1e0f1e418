"""Sequence packing: many tokenized examples per ``max_seq_len`` row, attention kept apart.

``pack_examples`` places whole examples into packs by best-fit decreasing (longest first,
each into the fullest pack that still has room), so almost no compute goes to padding.
Each pack carries ``position_ids`` that restart at 0 for every example and ``segment_ids``
(1..k, 0 = padding); ``packed_attention_mask`` turns those into the block-diagonal causal
mask a Hugging Face model accepts as a 4D ``attention_mask``, so a packed forward pass gives
every example exactly the loss it would get alone.

Two ways to run it:
  - whole dataset on one machine: ``pack_examples(rows, max_seq_len)`` (the global optimum);
  - streaming on Ray Data: ``pack_dataset(ds, cfg)`` / ``ds.map_batches(pack_batch, ...)``
    packs inside each batch of ``batch_rows`` rows (bounded memory: one batch of token ids
    at a time). A batch's leftovers are not combined with the next batch's; on ShareGPT +
    agent trajectories (benchmarks/packing.py, 4096) that costs 0.4 points of fill at 1024
    rows per batch and 1.3 points at 256 (97.4% global).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from ray.data.collate_fn import NumpyBatchCollateFn

IGNORE_INDEX = -100
Strategy = Literal["best_fit", "next_fit"]

PACK_COLUMNS = (
    "input_ids",
    "labels",
    "position_ids",
    "segment_ids",
    "num_examples",
    "example_ids",
    "sources",
    "num_tokens",
    "num_loss_tokens",
)


class PackingError(ValueError):
    """Examples that cannot be packed as configured (the message says which and why)."""


class PackingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        False, description="pack several examples per training row (needs the packed mask)"
    )
    max_seq_len: int | None = Field(
        None, gt=0, description="tokens per pack; default: the tokenizer's max_seq_len"
    )
    strategy: Strategy = Field(
        "best_fit",
        description="best_fit: best-fit decreasing (fullest packs); "
        "next_fit: keep the input order, start a new pack when the next example does not fit",
    )
    split_long: bool = Field(
        False,
        description="cut an example longer than max_seq_len into max_seq_len chunks "
        "(else it is an error)",
    )
    batch_rows: int = Field(
        2048, gt=0, description="rows packed together per Ray Data batch (streaming packing)"
    )


# ---------------------------------------------------------------------------- planning


def plan_packs(
    lengths: list[int] | np.ndarray, max_seq_len: int, strategy: Strategy = "best_fit"
) -> list[list[int]]:
    """Indices of the examples in each pack. Every length must be 1..max_seq_len.

    Deterministic: ties in length keep input order, ties in free room go to the older pack.
    """
    lengths = [int(n) for n in lengths]
    bad = [i for i, n in enumerate(lengths) if not 0 < n <= max_seq_len]
    if bad:
        raise PackingError(
            f"{len(bad)} lengths outside 1..{max_seq_len} (first: index {bad[0]}, "
            f"{lengths[bad[0]]} tokens)"
        )
    if strategy == "best_fit":
        return _best_fit_decreasing(lengths, max_seq_len)
    if strategy == "next_fit":
        return _next_fit(lengths, max_seq_len)
    raise PackingError(f"unknown strategy {strategy!r}; allowed: best_fit, next_fit")


def _best_fit_decreasing(lengths: list[int], max_seq_len: int) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    packs: list[list[int]] = []
    open_packs: list[tuple[int, int]] = []  # (free room, pack index), sorted
    for i in order:
        n = lengths[i]
        k = bisect.bisect_left(open_packs, (n, -1))  # least room that still fits n
        if k < len(open_packs):
            room, p = open_packs.pop(k)
        else:
            room, p = max_seq_len, len(packs)
            packs.append([])
        packs[p].append(i)
        if room - n > 0:
            bisect.insort(open_packs, (room - n, p))
    return packs


def _next_fit(lengths: list[int], max_seq_len: int) -> list[list[int]]:
    packs: list[list[int]] = []
    room = 0
    for i, n in enumerate(lengths):
        if n > room:
            packs.append([])
            room = max_seq_len
        packs[-1].append(i)
        room -= n
    return packs


# ---------------------------------------------------------------------------- packing


def pack_examples(
    rows: Iterable[Mapping[str, Any]],
    max_seq_len: int,
    strategy: Strategy = "best_fit",
    split_long: bool = False,
    pad_id: int | None = None,
) -> list[dict[str, Any]]:
    """Pack tokenized examples (``id``, ``input_ids``, ``labels``; ``source`` optional).

    Each pack: ``input_ids``, ``labels``, ``position_ids`` (0.. per example), ``segment_ids``
    (1..k per example, 0 on padding), ``num_examples``, ``example_ids``, ``sources``,
    ``num_tokens`` (real tokens), ``num_loss_tokens``. ``labels`` are the examples' own,
    except each example's first label is set to -100: unpacked it is never a target, packed
    it would be predicted from the previous example's last token.
    With ``pad_id``, every pack is right-padded to ``max_seq_len`` (labels -100, segment 0).
    """
    examples = _examples(rows, max_seq_len, split_long)
    plan = plan_packs([len(e["input_ids"]) for e in examples], max_seq_len, strategy)
    return [_build_pack([examples[i] for i in members], max_seq_len, pad_id) for members in plan]


def _examples(
    rows: Iterable[Mapping[str, Any]], max_seq_len: int, split_long: bool
) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        ids = np.asarray(row["input_ids"], dtype=np.int64)
        labels = np.asarray(row["labels"], dtype=np.int64)
        if len(ids) != len(labels):
            raise PackingError(
                f"example {row['id']!r}: {len(ids)} input_ids but {len(labels)} labels"
            )
        if len(ids) == 0:
            raise PackingError(f"example {row['id']!r} has no tokens")
        source = str(row.get("source", ""))
        if len(ids) <= max_seq_len:
            out.append({"id": str(row["id"]), "source": source, "input_ids": ids, "labels": labels})
        elif split_long:
            out += [
                {
                    "id": f"{row['id']}#{k}",
                    "source": source,
                    "input_ids": ids[start : start + max_seq_len],
                    "labels": labels[start : start + max_seq_len],
                }
                for k, start in enumerate(range(0, len(ids), max_seq_len))
            ]
        else:
            raise PackingError(
                f"example {row['id']!r} has {len(ids)} tokens > max_seq_len={max_seq_len}; "
                "tokenize with a max_seq_len no larger than the pack's (it cuts at turn "
                "boundaries), raise max_seq_len, or set split_long=True to cut it into chunks"
            )
    return out


def _build_pack(members: list[dict[str, Any]], max_seq_len: int, pad_id: int | None) -> dict:
    lengths = [len(m["input_ids"]) for m in members]
    labels = []
    for m in members:
        own = m["labels"].copy()
        own[0] = IGNORE_INDEX
        labels.append(own)
    pack = {
        "input_ids": np.concatenate([m["input_ids"] for m in members]),
        "labels": np.concatenate(labels),
        "position_ids": np.concatenate([np.arange(n, dtype=np.int32) for n in lengths]),
        "segment_ids": np.repeat(np.arange(1, len(members) + 1, dtype=np.int32), lengths),
    }
    real = int(sum(lengths))
    if pad_id is not None and real < max_seq_len:
        pack = pad_pack(pack, max_seq_len, pad_id)
    return pack | {
        "num_examples": len(members),
        "example_ids": [m["id"] for m in members],
        "sources": [m["source"] for m in members],
        "num_tokens": real,
        "num_loss_tokens": int((pack["labels"] != IGNORE_INDEX).sum()),
    }


def pad_pack(pack: Mapping[str, Any], width: int, pad_id: int) -> dict[str, np.ndarray]:
    """The four token columns of ``pack`` right-padded to ``width``.

    Padding gets segment 0 and position ids counting from 0, so it is a segment of its own
    both for ``packed_attention_mask`` and for models that find segments from position ids.
    """
    n = len(pack["input_ids"])
    extra = width - n
    if extra < 0:
        raise PackingError(f"a pack of {n} tokens does not fit in width {width}")
    fills = {"input_ids": pad_id, "labels": IGNORE_INDEX, "segment_ids": 0}
    out = {
        key: np.concatenate(
            [np.asarray(pack[key]), np.full(extra, fill, dtype=np.asarray(pack[key]).dtype)]
        )
        for key, fill in fills.items()
    }
    out["position_ids"] = np.concatenate(
        [np.asarray(pack["position_ids"]), np.arange(extra, dtype=np.int32)]
    )
    return out


# ---------------------------------------------------------------------------- Ray Data


def pack_batch(
    batch: Mapping[str, Any],
    max_seq_len: int,
    strategy: Strategy = "best_fit",
    split_long: bool = False,
) -> dict[str, list]:
    """A Ray Data ``map_batches`` function: the rows of one batch in, their packs out.

    ``ds.map_batches(pack_batch, fn_kwargs={"max_seq_len": 4096}, batch_size=2048)``
    Columns are plain lists so they land in Arrow/parquet as list<int> columns.
    """
    n = len(batch["id"])
    sources = batch["source"] if "source" in batch else [""] * n
    rows = (
        {
            "id": batch["id"][i],
            "source": sources[i],
            "input_ids": batch["input_ids"][i],
            "labels": batch["labels"][i],
        }
        for i in range(n)
    )
    packs = pack_examples(rows, max_seq_len, strategy=strategy, split_long=split_long)
    return {key: [_plain(p[key]) for p in packs] for key in PACK_COLUMNS}


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, np.ndarray) else value


def pack_dataset(ds, cfg: PackingConfig, max_seq_len: int | None = None):
    """``ds`` (tokenized rows) -> a Ray Dataset of packs, packed per ``cfg.batch_rows`` rows."""
    width = cfg.max_seq_len or max_seq_len
    if width is None:
        raise PackingError("no max_seq_len: set packing.max_seq_len or pass max_seq_len")
    return ds.select_columns(["id", "source", "input_ids", "labels"]).map_batches(
        pack_batch,
        fn_kwargs={"max_seq_len": width, "strategy": cfg.strategy, "split_long": cfg.split_long},
        batch_size=cfg.batch_rows,
        batch_format="numpy",
    )


def packing_efficiency(packs: list[Mapping[str, Any]], max_seq_len: int) -> float:
    """Real tokens / tokens computed when every pack is a ``max_seq_len`` row."""
    if not packs:
        return 0.0
    return sum(int(p["num_tokens"]) for p in packs) / (len(packs) * max_seq_len)


# ---------------------------------------------------------------------------- training


def packed_attention_mask(segment_ids, dtype=None):
    """Block-diagonal causal mask ``[b, 1, q, k]`` from ``segment_ids`` ``[b, q]``.

    Query i sees key j iff j <= i and both are in the same segment. Padding (segment 0)
    sees only padding, so no row is empty (an all-masked row turns softmax into NaN) and
    real tokens never see it. ``dtype=None`` gives a bool mask (True = attend; sdpa); a
    float dtype gives the additive form (0 / dtype min) that eager attention adds to its
    scores. Transformers 5.x passes a 4D ``attention_mask`` through unchanged.
    """
    import torch

    segment_ids = torch.as_tensor(segment_ids)
    if segment_ids.dim() == 1:
        segment_ids = segment_ids.unsqueeze(0)
    q = segment_ids.size(-1)
    same = segment_ids.unsqueeze(-1) == segment_ids.unsqueeze(-2)
    causal = torch.ones(q, q, dtype=torch.bool, device=segment_ids.device).tril()
    allowed = (same & causal).unsqueeze(1)
    if dtype is None or dtype == torch.bool:
        return allowed
    blocked = torch.zeros(allowed.shape, dtype=dtype, device=segment_ids.device)
    return blocked.masked_fill(~allowed, torch.finfo(dtype).min)


class PackedCollate(NumpyBatchCollateFn):
    """Right-pads a Ray Data batch of packs into tensors for a packed forward pass.

    Gives ``input_ids``, ``labels``, ``position_ids``, ``segment_ids`` and, with
    ``mask="bool"``/``"float"``, the 4D ``attention_mask`` from ``packed_attention_mask``.
    ``mask="none"`` leaves the mask out: transformers then finds the segments from the
    restarting ``position_ids`` itself (sdpa/eager), and flash-attention's varlen path does
    the same for a batch of one row; this only holds with ``use_cache=False`` in the
    forward call (with a cache, transformers 5.x skips the segment search and examples see
    each other). Real tokens: ``(segment_ids > 0).sum()``.
    """

    def __init__(
        self,
        pad_id: int,
        max_seq_len: int,
        mask: Literal["bool", "float", "none"] = "bool",
    ) -> None:
        self.pad_id = pad_id
        self.max_seq_len = max_seq_len
        self.mask = mask

    def __call__(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        import torch

        width = max(len(x) for x in batch["input_ids"])
        if width > self.max_seq_len:
            raise PackingError(f"a pack of {width} tokens exceeds max_seq_len={self.max_seq_len}")
        rows = [
            pad_pack(
                {
                    key: batch[key][i]
                    for key in ("input_ids", "labels", "position_ids", "segment_ids")
                },
                width,
                self.pad_id,
            )
            for i in range(len(batch["input_ids"]))
        ]
        out = {
            key: torch.from_numpy(np.stack([r[key] for r in rows]).astype(np.int64))
            for key in ("input_ids", "labels", "position_ids", "segment_ids")
        }
        if self.mask != "none":
            dtype = torch.float32 if self.mask == "float" else None
            out["attention_mask"] = packed_attention_mask(out["segment_ids"], dtype=dtype)
        return out
