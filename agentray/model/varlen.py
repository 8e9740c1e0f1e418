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

On CPU with one intra-op thread (a worker of 1 CPU), an example longer than ``QUERY_CHUNK``
tokens runs as ``chunked_causal()``: torch's CPU flash kernel skips key blocks only above each
query block's last row, in blocks of up to 512 keys, so its causal attention over 512 tokens
costs as much as the full square (and over 1,000 tokens 78% of it). Chunks of ``QUERY_CHUNK``
queries each attend their own keys causally and the earlier keys without a mask, merged by
their log-sum-exp (what ring attention does): the causal attention of an example of 500-1,500
tokens takes 11-25% less (forward and backward), with the same outputs and gradients up to
float rounding. With more threads the chunks' many small kernel calls scale worse than one
call per example and the gain is gone (2 threads: 0.98-1.02x on a quiet machine, slower under
load), so there each example stays one sdpa call.

``register()`` adds the kernel to transformers under ``VARLEN_SDPA`` (idempotent); load a
model with ``attn_implementation=VARLEN_SDPA`` after calling it.
"""

from __future__ import annotations

import functools
from typing import Any

VARLEN_SDPA = "sdpa_varlen"
QUERY_CHUNK = 128  # fastest of 64-384 for examples of 300-1,500 tokens (head_dim 32, fp32)


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
    chunked = (
        query.device.type == "cpu" and not gqa and dropout == 0.0 and torch.get_num_threads() == 1
    )
    parts = [
        chunked_causal().apply(q, k, v, scaling)
        if chunked and q.size(2) > QUERY_CHUNK
        else F.scaled_dot_product_attention(
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


def _chunks(n: int):
    return [(a, min(a + QUERY_CHUNK, n)) for a in range(0, n, QUERY_CHUNK)]


def _flash_cpu():
    import torch

    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default


def _flash_cpu_backward():
    import torch

    return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward.default


def merge_by_lse(out_a, lse_a, out_b, lse_b):
    """Attention over two disjoint sets of keys, each ``(out [..., q, dim], lse [..., q])``
    from a flash kernel, as one softmax over both: ``(out, lse)``."""
    import torch

    lse = torch.logaddexp(lse_a, lse_b)
    out = out_a * torch.exp(lse_a - lse)[..., None] + out_b * torch.exp(lse_b - lse)[..., None]
    return out, lse


def _chunked_forward(q, k, v, scale):
    """Causal attention of one example, ``[1, heads, n, dim]``: (out, log-sum-exp)."""
    import torch

    flash = _flash_cpu()
    outs, lses = [], []
    for a, b in _chunks(q.size(2)):
        out, lse = flash(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], 0.0, True, scale=scale)
        if a > 0:  # the earlier keys, all visible: merged by the rows' log-sum-exp
            past, past_lse = flash(q[:, :, a:b], k[:, :, :a], v[:, :, :a], 0.0, False, scale=scale)
            merged, lse = merge_by_lse(out, lse, past, past_lse)
            out = merged.to(out.dtype)
        outs.append(out)
        lses.append(lse)
    return torch.cat(outs, dim=2), torch.cat(lses, dim=2)


def _chunked_backward(grad, q, k, v, out, lse, scale):
    """Each chunk's two parts backpropagate against the merged output and log-sum-exp: the
    softmax over all of a row's keys, so each part's gradients are exact."""
    import torch

    backward = _flash_cpu_backward()
    grad = grad.contiguous()
    dq, dk, dv = torch.empty_like(q), torch.zeros_like(k), torch.zeros_like(v)
    for a, b in _chunks(q.size(2)):
        g, o, m, qa = grad[:, :, a:b], out[:, :, a:b], lse[:, :, a:b], q[:, :, a:b]
        own = backward(g, qa, k[:, :, a:b], v[:, :, a:b], o, m, 0.0, True, scale=scale)
        dq[:, :, a:b] = own[0]
        dk[:, :, a:b] += own[1]
        dv[:, :, a:b] += own[2]
        if a > 0:
            past = backward(g, qa, k[:, :, :a], v[:, :, :a], o, m, 0.0, False, scale=scale)
            dq[:, :, a:b] += past[0]
            dk[:, :, :a] += past[1]
            dv[:, :, :a] += past[2]
    return dq, dk, dv


@functools.cache
def chunked_causal():
    """The ``torch.autograd.Function`` (built on first use: torch is imported lazily)."""
    import torch
    from torch.autograd.function import once_differentiable

    class ChunkedCausal(torch.autograd.Function):
        """Causal attention of one example ``[1, heads, n, dim]`` in query chunks (CPU)."""

        @staticmethod
        def forward(ctx, q, k, v, scale):
            out, lse = _chunked_forward(q, k, v, scale)
            ctx.save_for_backward(q, k, v, out, lse)
            ctx.scale = scale
            return out

        @staticmethod
        @once_differentiable
        def backward(ctx, grad):
            q, k, v, out, lse = ctx.saved_tensors
            return (*_chunked_backward(grad, q, k, v, out, lse, ctx.scale), None)

    return ChunkedCausal
