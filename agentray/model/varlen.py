"""``sdpa_varlen``: attention over the examples of a flattened pack row, one example at a
time, for devices without flash-attention (CPU).

A packed micro-batch joined into one row without padding (``FlatPackCollate``: ``[1, n]``,
``position_ids`` restarting at 0 for every example) runs torch's ``scaled_dot_product_attention``
with ``is_causal=True`` on each example's slice: attention costs the sum over examples of
their squared length (halved by causality), where the block-diagonal 4D mask of the padded
pack rows (``PackedCollate``) makes sdpa compute every query-key pair of each row and the
mask itself is ``rows x width^2`` booleans. This is what flash-attention's varlen kernel does
on a GPU. (``torch.nn.attention.flex_attention`` would do it block-sparsely, but torch 2.13
has no flex-attention backward on CPU: it cannot train there.)

``register()`` adds the kernel to transformers under ``VARLEN_SDPA`` (idempotent); load a
model with ``attn_implementation=VARLEN_SDPA`` after calling it.
"""

from __future__ import annotations

from typing import Any

VARLEN_SDPA = "sdpa_varlen"


def register() -> str:
    """Make ``VARLEN_SDPA`` a transformers attention implementation; returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(VARLEN_SDPA, varlen_sdpa_forward)
    AttentionMaskInterface.register(VARLEN_SDPA, _no_mask)
    return VARLEN_SDPA


def _no_mask(*args: Any, **kwargs: Any) -> None:
    # the examples' bounds come from position_ids; no mask tensor is built
    return None


def example_bounds(position_ids) -> list[tuple[int, int]]:
    """(start, end) of each example in a ``[1, n]`` row whose positions restart at 0."""
    import torch

    starts = torch.nonzero(position_ids[0] == 0).flatten().tolist()
    if not starts or starts[0] != 0:
        starts = [0, *starts]
    ends = [*starts[1:], position_ids.size(-1)]
    return list(zip(starts, ends, strict=True))


def varlen_sdpa_forward(
    module,
    query,
    key,
    value,
    attention_mask,
    scaling: float | None = None,
    dropout: float = 0.0,
    position_ids=None,
    **kwargs: Any,
):
    """transformers' attention signature: ``query`` ``[1, heads, n, dim]`` (key/value may
    have fewer heads: grouped-query attention); returns ``([1, n, heads, dim], None)``."""
    import torch
    import torch.nn.functional as F

    if query.size(0) != 1 or position_ids is None:
        raise ValueError(
            f"attn_implementation={VARLEN_SDPA!r} takes one flattened pack row with "
            f"position_ids (FlatPackCollate); got a batch of {query.size(0)} rows"
            + ("" if position_ids is not None else " without position_ids")
        )
    gqa = key.size(1) != query.size(1)
    lengths = [end - start for start, end in example_bounds(position_ids)]
    # split, not slices: a slice's backward fills a zero tensor of the whole row per example
    parts = [
        F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=dropout, scale=scaling, enable_gqa=gqa
        )
        for q, k, v in zip(
            query.split(lengths, dim=2),
            key.split(lengths, dim=2),
            value.split(lengths, dim=2),
            strict=True,
        )
    ]
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
    return out.transpose(1, 2).contiguous(), None
