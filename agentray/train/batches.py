"""Training batches: padded rows or packs, and the loss over their label tokens.

The process stage writes either one example per row (``input_ids``, ``labels``) or packs of
several examples per row (``agentray.model.packing.PACK_COLUMNS``: ``position_ids`` restart
at 0 for every example, ``segment_ids`` number them 1..k, 0 is padding). The trainer tells
them apart by the schema and picks the collate that keeps attention inside each example:

- padded rows: ``PadCollate`` (a 2D padding mask);
- packs with sdpa/eager attention (set explicitly; ``auto`` picks ``sdpa_varlen`` for packs
  without flash-attn): ``PackedCollate``'s 4D block-diagonal causal mask plus ``position_ids``;
- packs with flash-attention: ``FlatPackCollate`` joins the micro-batch's packs into one row
  without padding, and transformers runs flash-attention's varlen kernel over the examples it
  finds from the restarting ``position_ids`` (it does so only for a batch of one row);
- packs with ``sdpa_varlen`` (``agentray.model.varlen``; CPU, or GPU without flash-attn): the
  same one row, sdpa run on each example's slice.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import numpy as np
from ray.data.collate_fn import NumpyBatchCollateFn

from agentray.model.packing import PackedCollate, PackingError
from agentray.model.varlen import VARLEN_SDPA
from agentray.train.config import TrainConfig

IGNORE_INDEX = -100
UNPACKED_COLUMNS = ("input_ids", "labels")
PACKED_COLUMNS = ("input_ids", "labels", "position_ids", "segment_ids")
MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids")


def is_packed(column_names: Iterable[str]) -> bool:
    """Packs carry ``segment_ids``; one-example rows do not."""
    return "segment_ids" in set(column_names)


class PadCollate(NumpyBatchCollateFn):
    """Right-pads a Ray Data batch of ragged ``input_ids``/``labels`` (cut at
    ``max_seq_len``) into tensors: ids with ``pad_id``, labels with -100, plus the mask."""

    def __init__(self, pad_id: int, max_seq_len: int) -> None:
        self.pad_id = pad_id
        self.max_seq_len = max_seq_len

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        ids = [np.asarray(x, dtype=np.int64)[: self.max_seq_len] for x in batch["input_ids"]]
        labels = [np.asarray(x, dtype=np.int64)[: self.max_seq_len] for x in batch["labels"]]
        width = max(len(x) for x in ids)
        out_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        out_labels = torch.full((len(ids), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, (row_ids, row_labels) in enumerate(zip(ids, labels, strict=True)):
            n = len(row_ids)
            out_ids[i, :n] = torch.from_numpy(row_ids)
            out_labels[i, :n] = torch.from_numpy(row_labels)
            mask[i, :n] = 1
        return {"input_ids": out_ids, "labels": out_labels, "attention_mask": mask}


class FlatPackCollate(NumpyBatchCollateFn):
    """The real tokens of a batch of packs joined into one row ``[1, n]``, padding dropped.

    ``position_ids`` still restart per example (flash-attention's varlen path reads the
    example boundaries from them); ``segment_ids`` are renumbered so they stay distinct
    across packs. Each example's first label is already -100 (the packer sets it), so no
    token is trained to predict across a boundary.
    """

    def __init__(self, max_seq_len: int) -> None:
        self.max_seq_len = max_seq_len

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        parts: dict[str, list[np.ndarray]] = {key: [] for key in PACKED_COLUMNS}
        offset = 0
        for i in range(len(batch["input_ids"])):
            segments = np.asarray(batch["segment_ids"][i], dtype=np.int64)
            if len(segments) > self.max_seq_len:
                raise PackingError(
                    f"a pack of {len(segments)} tokens exceeds max_seq_len={self.max_seq_len}"
                )
            real = segments > 0
            for key in ("input_ids", "labels", "position_ids"):
                parts[key].append(np.asarray(batch[key][i], dtype=np.int64)[real])
            parts["segment_ids"].append(segments[real] + offset)
            offset += int(segments.max(initial=0))
        return {
            key: torch.from_numpy(np.concatenate(values))[None] for key, values in parts.items()
        }


def make_collate(
    packed: bool, pad_id: int, max_seq_len: int, attn_implementation: str
) -> NumpyBatchCollateFn:
    """The collate that keeps attention inside each example for this attention kernel."""
    flat = attn_implementation.startswith("flash") or attn_implementation == VARLEN_SDPA
    if not packed:
        if attn_implementation == VARLEN_SDPA:
            raise ValueError(
                f"attn_implementation={VARLEN_SDPA!r} needs packed rows (process.packing)"
            )
        return PadCollate(pad_id, max_seq_len)
    if flat:
        return FlatPackCollate(max_seq_len)
    return PackedCollate(
        pad_id, max_seq_len, mask="float" if attn_implementation == "eager" else "bool"
    )


def forward_loss(model, batch: dict[str, Any]):
    """(sum of the token losses over label tokens, their count) for one collated batch."""
    return label_token_losses(model, batch).sum(), (batch["labels"][:, 1:] != IGNORE_INDEX).sum()


def label_token_losses(model, batch: dict[str, Any]):
    """``[b, t-1]``: the cross-entropy of each label token of a collated batch under
    ``model`` (0 where the label is -100), as ``token_losses`` of the full logits.

    The model gets only the inputs the batch has: padded rows their 2D mask; packs their
    ``position_ids`` and, unless flattened for flash-attention, the 4D block mask.
    ``use_cache=False``: with a cache, transformers would not look for packed examples.
    Logits are computed only where the next token is a label (``predicts_a_label``).
    """
    import torch

    inputs = {key: batch[key] for key in MODEL_INPUTS if key in batch}
    labels = batch["labels"]
    keep = predicts_a_label(labels)
    logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits
    if logits.dim() == 3:  # a model that ignores logits_to_keep: every position's logits
        return token_losses(logits, labels)
    scored = keep[:, :-1]
    losses = torch.zeros(scored.shape, dtype=torch.float32, device=logits.device)
    losses[scored] = label_cross_entropy().apply(logits.float(), labels[:, 1:][scored])
    return losses


@functools.cache
def label_cross_entropy():
    """``apply(logits [n, vocab], targets [n])``: each row's cross-entropy, as
    ``F.cross_entropy(..., reduction="none")``.

    ``F.cross_entropy``'s backward allocates a zero-filled ``[n, vocab]`` tensor for the
    targets' gradients and another for the logits' gradient: on CPU each fresh tensor of
    tens of MB costs page faults (the zero-fill alone ~10 ms of a 2,048-token step). Here
    the backward writes the gradient over the saved log-probabilities (``exp(logp) * g``,
    minus ``g`` at the target: the same values), so the graph can be backpropagated once
    only (a second backward, ``retain_graph``, is refused). The logits themselves are not
    touched: a model may have saved them (e.g. logit soft-capping).
    """
    import torch
    from torch.autograd.function import once_differentiable

    class LabelCrossEntropy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, logits, targets):
            logp = torch.log_softmax(logits, -1)
            ctx.save_for_backward(logp, targets)
            ctx.spent = False
            return -logp.gather(1, targets[:, None]).squeeze(1)

        @staticmethod
        @once_differentiable
        def backward(ctx, grad):
            if ctx.spent:
                raise RuntimeError(
                    "agentray.train.batches.label_cross_entropy: backward ran twice on one "
                    "graph (retain_graph); its first backward reused the saved tensor"
                )
            ctx.spent = True
            logp, targets = ctx.saved_tensors
            out = logp.exp_().mul_(grad[:, None])
            out[torch.arange(targets.numel(), device=out.device), targets] -= grad
            return out, None

    return LabelCrossEntropy


def predicts_a_label(labels):
    """``[b, t]`` booleans: the positions whose next token is a label. Only these positions'
    logits are computed (``logits_to_keep``): the vocabulary projection, the softmax and their
    gradients are the biggest per-token cost of a small model, and demonstrations, prompts
    and padding need none."""
    import torch

    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return keep


def token_losses(logits, labels):
    """Cross-entropy of predicting ``labels[:, 1:]`` from ``logits[:, :-1]``, ``[b, t-1]``
    (0 where the label is -100); fp32 whatever the logits' dtype."""
    import torch.nn.functional as F

    # [tokens, vocab] rows: on CPU 2.4x faster than the class-dim-1 layout ([b, vocab, t])
    batch, width, vocab = logits.shape
    return F.cross_entropy(
        logits[:, :-1].float().reshape(-1, vocab),
        labels[:, 1:].reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view(batch, width - 1)


def real_tokens(batch: dict[str, Any]):
    """Tokens that are not padding."""
    if "segment_ids" in batch:
        return (batch["segment_ids"] > 0).sum()
    if "attention_mask" in batch:
        return batch["attention_mask"].sum()
    return batch["input_ids"].new_tensor(batch["input_ids"].numel())


def attention_pairs(batch: dict[str, Any]):
    """Sum over examples of length squared: the query-key pairs attention really needs
    (packed: per example, not per pack), for the model-FLOPs estimate."""
    import torch

    if "segment_ids" in batch:
        segments = batch["segment_ids"]
        rows = torch.arange(segments.size(0), device=segments.device)[:, None]
        keys = (rows * (int(segments.max()) + 1) + segments)[segments > 0]
        counts = torch.bincount(keys)
    else:
        counts = batch["attention_mask"].sum(dim=1)
    return (counts.double() ** 2).sum()


def examples_in(batch: dict[str, Any]) -> int:
    """Training examples in a batch: rows, or the examples inside the packs."""
    import torch

    if "segment_ids" not in batch:
        return int(batch["input_ids"].size(0))
    return sum(int(torch.unique(row[row > 0]).numel()) for row in batch["segment_ids"])


def training_dataset(data_dir: str, cfg: TrainConfig):
    """(the Ray Dataset of training rows, whether they are packs, how many rows). The row
    count and the longest pack come from the parquet metadata and the ``num_tokens`` column,
    read on the driver: no Ray Data pass before training starts."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    import ray.data

    from agentray import storage

    fs, path = storage.filesystem(data_dir)
    files = pads.dataset(path, filesystem=fs, format="parquet")
    packed = is_packed(files.schema.names)
    num_rows = files.count_rows()
    ds = ray.data.read_parquet(data_dir)
    ds = ds.select_columns(list(PACKED_COLUMNS if packed else UNPACKED_COLUMNS))
    ds.context.enable_progress_bars = False  # this dataset's own context; the line says enough
    if cfg.cache_dataset:
        ds = ds.materialize()  # else every epoch reads the files again (seconds per epoch)
    if packed:
        if "num_tokens" in files.schema.names:
            longest = pc.max(files.to_table(columns=["num_tokens"])["num_tokens"]).as_py()
        else:
            longest = ds.map_batches(_row_lengths, batch_format="numpy").max("length")
        if longest > cfg.max_seq_len:
            raise ValueError(
                f"train.max_seq_len={cfg.max_seq_len} is shorter than the longest pack "
                f"({longest} tokens) in {data_dir}: packs are never cut; set "
                "train.max_seq_len >= the packing length"
            )
    return ds, packed, num_rows


def _row_lengths(batch: dict[str, Any]) -> dict[str, list[int]]:
    return {"length": [len(ids) for ids in batch["input_ids"]]}
