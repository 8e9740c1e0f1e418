"""Shared-prefix decoding for a batch of prompts that open alike (cascade attention, as in
FlashInfer's cascade inference and Hydragen).

The rows of a batch from one env family share a long opening (instruction, demonstration)
and differ in a short tail (the problem, an episode's later turns). A padded cache holds
that opening once per row, and every decode step reads all of it for every row: on a CPU
the step's time goes to streaming ``rows x width`` keys/values through memory, left padding
(rows of shorter prompts) included.

``SharedPrefixCache`` splits the batch into groups of consecutive rows (``group_rows``) and
holds each group's common prefix once (``[1, heads, P, dim]``) and, per row, only what
follows it (the rest of its prompt, then the generated tokens) in a buffer of the group's
own width, preallocated and written in place. Its attention (``register()``:
``SHARED_PREFIX_SDPA``; plain sdpa whenever no such cache is active) scores a group's
queries against its prefix as one matrix product and against each row's tail, and takes
one softmax over both: the same sums as attending the whole row, in another order (greedy
tokens equal those of a row generated alone; checked by tests/policies).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from transformers import AttentionInterface, Cache
from transformers.cache_utils import CacheLayerMixin
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from agentray.model.compat import cache_kwarg
from agentray.policies.prefix_cache import KV

SHARED_PREFIX_SDPA = "sdpa_shared_prefix"
# a group's fixed cost per decode step (its own small matrix products), counted in the
# key/value positions that could be read meanwhile
GROUP_COST = 1024

# the cache of the generate call running on this thread (the policy's lock: one at a time)
_ACTIVE: ContextVar[ActiveCache | None] = ContextVar("shared_prefix_cache", default=None)


def register() -> str:
    """Make ``SHARED_PREFIX_SDPA`` a transformers attention implementation (idempotent)."""
    AttentionInterface.register(SHARED_PREFIX_SDPA, shared_prefix_attention)
    AttentionMaskInterface.register(SHARED_PREFIX_SDPA, _mask)
    return SHARED_PREFIX_SDPA


def _mask(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    if _ACTIVE.get() is not None:  # the cache knows its rows' bounds: no mask is built
        return None
    return sdpa_mask(*args, **kwargs)


def group_rows(
    prompts: list[list[int]], new_tokens: int, min_shared: int
) -> list[tuple[int, int, int]]:
    """Consecutive rows that share an opening, as ``(first row, rows, shared)``: ``shared``
    is the length of their common prefix of ``prompt[:-1]`` (a lone row's: all of it). A
    row joins the group before it if they share at least ``min_shared`` tokens and the
    positions a decode step reads (each group's prefix once, its rows' tails padded to the
    longest, ``new_tokens`` more each) grow by less than a group's fixed cost
    (``GROUP_COST``). Sort the prompts first: those that share the most become neighbours."""
    groups: list[tuple[int, int, int]] = []
    for i, prompt in enumerate(prompts):
        if groups:
            first, n, shared = groups[-1]
            common = _common_len(prompts[first], prompt, shared)
            joined = _reads(prompts[first : i + 1], common, new_tokens)
            apart = _reads(prompts[first:i], shared, new_tokens) + len(prompt) - 1 + new_tokens
            if common >= min_shared and joined < apart + GROUP_COST:
                groups[-1] = (first, n + 1, common)
                continue
        groups.append((i, 1, len(prompt) - 1))
    return groups


def _reads(prompts: list[list[int]], shared: int, new_tokens: int) -> int:
    return shared + len(prompts) * (max(len(p) - 1 for p in prompts) - shared + new_tokens)


def _common_len(a: list[int], b: list[int], limit: int) -> int:
    n = min(len(a) - 1, len(b) - 1, limit)
    for k in range(n):
        if a[k] != b[k]:
            return k
    return n


class _Group:
    """One group of rows in one layer: the prefix's keys/values, and the rows' tails in
    ``keys``/``values`` ``[rows, heads, capacity, dim]`` (the first ``length`` columns
    written; ``bias`` is -inf on each row's left padding)."""

    def __init__(
        self, prompts: list[list[int]], rows: list[KV], layer: int, group: tuple, capacity: int
    ) -> None:
        first, n, shared = group
        k, v = rows[first][layer]
        self.first, self.n = first, n
        self.prefix = (k[:, :, :shared].contiguous(), v[:, :, :shared].contiguous())
        tails = [len(p) - 1 - shared for p in prompts[first : first + n]]
        self.length = max(tails)
        width = self.length + capacity
        self.keys = k.new_zeros((n, k.shape[1], width, k.shape[3]))
        self.values = v.new_zeros((n, v.shape[1], width, v.shape[3]))
        starts = [self.length - tail for tail in tails]
        for r, start in enumerate(starts):
            k, v = rows[first + r][layer]
            self.keys[r, :, start : self.length] = k[0, :, shared:]
            self.values[r, :, start : self.length] = v[0, :, shared:]
        pad = torch.arange(width)[None, :] < torch.tensor(starts)[:, None]
        bias = torch.zeros(pad.shape).masked_fill_(pad, torch.finfo(torch.float32).min)
        self.bias = bias[:, None, None, :].to(k.device)  # over heads and queries

    def append(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Write this group's rows of the new columns (the buffers double if full)."""
        rows = slice(self.first, self.first + self.n)
        end = self.length + key_states.shape[-2]
        if end > self.keys.shape[2]:
            grow = max(end - self.keys.shape[2], self.keys.shape[2])
            self.keys, self.values = (_grown(t, grow, 2) for t in (self.keys, self.values))
            self.bias = _grown(self.bias, grow, 3)
        self.keys[:, :, self.length : end] = key_states[rows]
        self.values[:, :, self.length : end] = value_states[rows]
        self.length = end

    def attend(self, q: torch.Tensor, scale: float) -> torch.Tensor:
        """``q`` ``[rows, kv_heads, queries per kv head, dim]`` of this group's rows, one
        decode step each: their attention output, same shape."""
        n, kv_heads, per_head, dim = q.shape
        pk, pv = self.prefix
        shared = pk.shape[2]
        tk, tv = self.keys[:, :, : self.length], self.values[:, :, : self.length]
        # the prefix as one product for all the group's queries: [1, kv_heads, n * per_head, P]
        flat = q.transpose(0, 1).reshape(1, kv_heads, n * per_head, dim)
        s1 = torch.matmul(flat, pk.transpose(-1, -2)).view(kv_heads, n, per_head, shared)
        s2 = torch.matmul(q, tk.transpose(-1, -2)).float() * scale + self.bias[..., : self.length]
        scores = torch.cat([s1.transpose(0, 1).float() * scale, s2], dim=-1)
        p = torch.softmax(scores, dim=-1).to(pv.dtype)
        p1 = p[..., :shared].transpose(0, 1).reshape(1, kv_heads, n * per_head, shared)
        o1 = torch.matmul(p1, pv).view(kv_heads, n, per_head, dim).transpose(0, 1)
        return o1 + torch.matmul(p[..., shared:], tv)


def _grown(t: torch.Tensor, extra: int, dim: int) -> torch.Tensor:
    """``t`` with ``extra`` zeros appended on ``dim``."""
    return torch.cat([t, t.new_zeros(t.shape[:dim] + (extra,) + t.shape[dim + 1 :])], dim)


class BuiltLayer(CacheLayerMixin):
    """A cache layer built whole before the forward pass (no lazy start), full attention;
    subclasses set ``get_seq_length`` (the columns cached before the new ones)."""

    is_sliding = False

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        pass  # built whole in __init__

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    def get_max_length(self) -> int:
        return -1


class SharedPrefixLayer(BuiltLayer):
    """One model layer of a ``SharedPrefixCache``: its ``_Group``s."""

    def __init__(
        self, prompts: list[list[int]], rows: list[KV], layer: int, groups: list, capacity: int
    ) -> None:
        super().__init__()
        self.groups = [_Group(prompts, rows, layer, g, capacity) for g in groups]
        self.seen = max(len(p) for p in prompts) - 1  # columns of the padded prompts cached
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new columns; returns them (the attention reads the groups)."""
        for group in self.groups:
            group.append(key_states, value_states)
        self.seen += key_states.shape[-2]
        return key_states, value_states

    def get_seq_length(self) -> int:
        return self.seen


class ActiveCache(Cache):
    """A cache that computes its layers' attention itself (``attend``), while ``active``."""

    @contextmanager
    def active(self) -> Iterator[None]:
        """While inside, ``SHARED_PREFIX_SDPA`` attention on this thread reads this cache."""
        token = _ACTIVE.set(self)
        try:
            yield
        finally:
            _ACTIVE.reset(token)

    def attend(self, layer_idx: int, query: torch.Tensor, scaling: float | None) -> torch.Tensor:
        """``query`` ``[rows, heads, q, dim]`` of one layer: its output ``[rows, q, heads,
        dim]``."""
        raise NotImplementedError


class SharedPrefixCache(ActiveCache):
    """A batch's keys/values for ``generate``, which then runs every prompt's last token
    and decodes. ``prompts``: the rows' token ids; ``rows``: per prompt, per layer, the
    keys/values ``[1, heads, tokens, dim]`` of all but its last token; ``groups`` as
    ``group_rows`` returns; ``capacity``: columns to allocate for the tokens to come."""

    def __init__(
        self, prompts: list[list[int]], rows: list[KV], groups: list, capacity: int
    ) -> None:
        layers = [
            SharedPrefixLayer(prompts, rows, layer, groups, capacity)
            for layer in range(len(rows[0]))
        ]
        super().__init__(layers=layers)  # type: ignore[arg-type]

    def attend(self, layer_idx: int, query: torch.Tensor, scaling: float | None) -> torch.Tensor:
        """One decode step: each group attends its prefix and its rows' tails."""
        rows, heads, queries, dim = query.shape
        if queries != 1:
            raise ValueError(
                f"{SHARED_PREFIX_SDPA}: a SharedPrefixCache decodes one token per row, got "
                f"{queries} (generate must start from the prompts' last token)"
            )
        scale = dim**-0.5 if scaling is None else scaling
        layer = self.layers[layer_idx]
        kv_heads = layer.groups[0].keys.shape[1]
        q = query.reshape(rows, kv_heads, heads // kv_heads, dim)  # per key/value head
        out = [g.attend(q[g.first : g.first + g.n], scale) for g in layer.groups]
        return torch.cat(out).reshape(rows, 1, heads, dim).to(query.dtype)


def greedy_decode(
    model: Any,
    input_ids: torch.Tensor,
    logits_processor: Any,
    stopping_criteria: Any,
    generation_config: Any,
    pad_token_id: int,
    **model_kwargs: Any,
) -> torch.Tensor:
    """``generate``'s greedy loop over a ``SharedPrefixCache`` (``custom_generate``), without
    its per-step bookkeeping (the attention mask and cache positions it grows each step:
    this cache's attention reads neither). The same processors and stopping criteria, the
    same tokens; rows that end early are padded as ``generate`` pads them."""
    cache = model_kwargs.get("cache", model_kwargs.get("past_key_values"))
    mask = model_kwargs["attention_mask"]
    has_eos = any(hasattr(c, "eos_token_id") for c in stopping_criteria)
    unfinished = torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    positions = mask.long().sum(-1, keepdim=True) - 1  # a left-padded row's last position
    sequences, tokens = input_ids, input_ids[:, -1:]
    for _ in range(generation_config.max_new_tokens):
        out = model(
            input_ids=tokens,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{cache_kwarg(model): cache},
        )
        scores = logits_processor(sequences, out.logits[:, -1].to(copy=True, dtype=torch.float32))
        next_tokens = torch.argmax(scores, dim=-1)
        if has_eos:
            next_tokens = torch.where(unfinished, next_tokens, pad_token_id)
        sequences = torch.cat([sequences, next_tokens[:, None]], dim=-1)
        unfinished &= ~stopping_criteria(sequences, scores)
        if not unfinished.any():
            break
        tokens, positions = next_tokens[:, None], positions + 1
    return sequences


def shared_prefix_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature (``query`` ``[rows, heads, q, dim]``; returns
    ``([rows, q, heads, dim], None)``): an active ``ActiveCache`` computes it (a
    ``SharedPrefixCache``: each group attends its prefix and its rows' tails); otherwise
    plain sdpa."""
    cache = _ACTIVE.get()
    if cache is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, **kwargs
        )
    return cache.attend(module.layer_idx, query, scaling), None
