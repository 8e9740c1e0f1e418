"""Prefill for the HF policy: the keys/values of every prompt of a batch, each prompt's
opening taken from the prefix cache where it is there.

Sequentially, each prompt is one forward pass over what the cache lacks: on a small model
on a CPU that is a few milliseconds of per-call overhead for a tail of a few dozen tokens.
So prompts that share an opening with an earlier prompt of the batch (one env family's
episodes) wait until it is cached, and then their tails go through the model together:
one forward pass per group (``PrefillCache``), each tail attending the group's shared
prefix, whatever the row had cached after it (an episode's earlier turns) and itself,
causally. Greedy outputs equal those of each prompt prefilled alone (tested).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch

from agentray.model.compat import cache_kwarg, output_cache
from agentray.model.varlen import merge_by_lse
from agentray.policies.prefix_cache import KV, PrefixCache, common_len
from agentray.policies.shared_prefix import ActiveCache, BuiltLayer


@dataclass
class PrefillCall:
    """What one ``Prefill.rows`` call reads and counts: ``prefixes`` (the policy's prefix
    cache, or one for this call), prefixes shorter than ``min_shared`` tokens are
    recomputed; ``counts`` gets the prefill tokens, and the cache hits if ``count_hits``."""

    prefixes: PrefixCache
    counts: Counter
    min_shared: int
    count_hits: bool

    def count(self, ids: list[int], start: int) -> None:
        """A prompt prefilled from ``start`` (0: nothing reused)."""
        self.counts["prefill_tokens"] += len(ids) - start + 1  # generate runs the last one
        if self.count_hits:
            self.counts["prefix_cache_hits" if start else "prefix_cache_misses"] += 1
            self.counts["prefix_cache_hit_tokens"] += start


class Prefill:
    """Prefill for one model: ``rows(prompts)`` (``batched``: tails of a group together, on
    CPU with a ``SHARED_PREFIX_SDPA`` model; else one prompt at a time)."""

    def __init__(self, model: Any, device: str, pad_token_id: int, batched: bool) -> None:
        self.model = model
        self.device = device
        self.pad_token_id = pad_token_id
        self.batched = batched and torch.device(device).type == "cpu"

    def rows(self, prompts: list[list[int]], call: PrefillCall) -> list[KV] | None:
        """Per prompt, per layer: (keys, values) of batch 1 over all but its last token,
        each stored in ``call.prefixes``; None where the model's cache is not plain layers."""
        out: list[KV | None] = [None] * len(prompts)
        later: list[int] = []  # rows that share an opening with an earlier row
        previous: list[int] = []
        for i in sorted(range(len(prompts)), key=prompts.__getitem__):
            ids = prompts[i][:-1]
            if self.batched and common_len(previous, ids) >= call.min_shared:
                later.append(i)
            elif (kv := self._alone(ids, call)) is None:
                return None
            else:
                out[i] = kv
            previous = ids
        for group in self._groups([(i, prompts[i][:-1]) for i in later], call):
            for i, kv in self._together(group, call):
                if kv is None:
                    return None
                out[i] = kv
        return out  # type: ignore[return-value]

    def _alone(self, ids: list[int], call: PrefillCall) -> KV | None:
        start, kv = _match(ids, call)
        if start < len(ids):
            kv = self.extend(ids[start:], kv)
        if kv is None:
            return None
        call.prefixes.insert(ids, kv)
        call.count(ids, start)
        return kv

    def extend(self, ids: list[int], kv: KV | None) -> KV | None:
        """``kv`` (or nothing) extended by the keys/values of ``ids`` (one forward pass)."""
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        cache = DynamicCache(ddp_cache_data=kv) if kv else DynamicCache()
        out = self.model(
            input_ids=torch.tensor([ids], device=self.device),
            use_cache=True,
            logits_to_keep=1,
            **{cache_kwarg(self.model): cache},
        )
        layers = output_cache(out).layers
        if any(type(layer) is not DynamicLayer for layer in layers):
            return None
        return [(layer.keys, layer.values) for layer in layers]

    def _groups(self, rows: list[tuple[int, list[int]]], call: PrefillCall):
        """Consecutive rows (sorted) that share ``min_shared`` tokens, with their matches."""
        group: list[tuple[int, list[int], int, KV | None]] = []
        for i, ids in rows:
            start, kv = _match(ids, call)
            if group and common_len(group[-1][1], ids) < call.min_shared:
                yield group
                group = []
            group.append((i, ids, start, kv))
        if group:
            yield group

    def _together(self, group: list, call: PrefillCall):
        """(row, keys/values) of a group's rows: those with a cached opening in one forward
        pass, the others alone."""
        shared = min(
            min(start for _, _, start, _ in group),
            min(common_len(group[0][1], ids) for _, ids, _, _ in group),
        )
        todo = [row for row in group if row[2] < len(row[1])]
        if shared < call.min_shared or len(todo) < 2:
            for i, ids, _, _ in group:
                yield i, self._alone(ids, call)
            return
        for i, ids, start, kv in group:
            if start == len(ids):  # all cached
                call.count(ids, start)
                yield i, kv
        prefix = [
            (k[:, :, :shared].contiguous(), v[:, :, :shared].contiguous()) for k, v in todo[0][3]
        ]
        pasts = [[(k[:, :, shared:], v[:, :, shared:]) for k, v in kv] for _, _, _, kv in todo]
        news = [ids[start:] for _, ids, start, _ in todo]
        cache = PrefillCache(prefix, pasts, [len(n) for n in news])
        width = max(len(n) for n in news)
        input_ids = torch.tensor(
            [[self.pad_token_id] * (width - len(n)) + n for n in news], device=self.device
        )
        with cache.active():
            self.model(
                input_ids=input_ids,
                position_ids=cache.position_ids(),
                use_cache=True,
                logits_to_keep=1,
                **{cache_kwarg(self.model): cache},
            )
        for (i, ids, start, _), kv in zip(todo, cache.rows(), strict=True):
            call.prefixes.insert(ids, kv)
            call.count(ids, start)
            yield i, kv


def _match(ids: list[int], call: PrefillCall) -> tuple[int, KV | None]:
    start, kv = call.prefixes.match(ids)
    return (start, kv) if start >= call.min_shared else (0, None)


class _PrefillLayer(BuiltLayer):
    """One layer of a ``PrefillCache``: the shared prefix ``[1, heads, S, dim]``, and per
    row its cached positions after it, right-aligned in ``past_width`` columns, then its
    new tokens' (left-padded in ``new_width`` columns, written by the forward pass)."""

    def __init__(self, prefix: tuple, pasts: list[tuple], new_width: int) -> None:
        super().__init__()
        pk, pv = prefix
        self.prefix = prefix
        self.past_width = max(k.shape[-2] for k, _ in pasts)
        shape = (len(pasts), pk.shape[1], self.past_width + new_width, pk.shape[3])
        self.keys, self.values = pk.new_zeros(shape), pv.new_zeros(shape)
        for r, (k, v) in enumerate(pasts):
            start = self.past_width - k.shape[-2]
            self.keys[r, :, start : self.past_width] = k[0]
            self.values[r, :, start : self.past_width] = v[0]
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.keys[:, :, self.past_width :] = key_states
        self.values[:, :, self.past_width :] = value_states
        return key_states, value_states

    def get_seq_length(self) -> int:
        return self.prefix[0].shape[-2] + self.past_width


class PrefillCache(ActiveCache):
    """The keys/values of one forward pass that prefills several rows' new tokens after an
    opening they share. ``prefix``: per layer, the opening's (keys, values) ``[1, heads, S,
    dim]``; ``pasts``: per row, per layer, what the row has cached after it (maybe
    nothing); ``new_lengths``: per row, the tokens this pass adds (left-padded to the
    longest in the pass's ``input_ids``)."""

    def __init__(self, prefix: KV, pasts: list[KV], new_lengths: list[int]) -> None:
        width = max(new_lengths)
        layers = [
            _PrefillLayer(prefix[layer], [p[layer] for p in pasts], width)
            for layer in range(len(prefix))
        ]
        super().__init__(layers=layers)  # type: ignore[arg-type]
        self.shared = prefix[0][0].shape[-2]
        self.past_lengths = [p[0][0].shape[-2] for p in pasts]
        self.new_lengths = new_lengths
        self.bias = self._bias(layers[0].past_width, width, prefix[0][0])

    def _bias(self, past_width: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """``[rows, 1, width, past_width + width]``: 0 where a query may attend, else the
        dtype's minimum. A real query sees its row's cached positions and its own new
        tokens up to itself; a padding query sees itself only (no row is all masked)."""
        rows = len(self.new_lengths)
        first_new = width - torch.tensor(self.new_lengths)[:, None, None]  # [rows, 1, 1]
        query = torch.arange(width)[None, :, None]
        key = torch.arange(width)[None, None, :]
        new_ok = ((key >= first_new) & (key <= query)) | ((key == query) & (query < first_new))
        first_past = past_width - torch.tensor(self.past_lengths)[:, None, None]
        past_ok = (torch.arange(past_width)[None, None, :] >= first_past).expand(
            rows, width, past_width
        )
        allowed = torch.cat([past_ok, new_ok], dim=-1)
        bias = torch.zeros(allowed.shape, dtype=like.dtype)
        bias.masked_fill_(~allowed, torch.finfo(like.dtype).min)
        return bias[:, None].to(like.device)

    def position_ids(self) -> torch.Tensor:
        """``[rows, width]``: each new token's position in its prompt (padding: 0)."""
        width = max(self.new_lengths)
        index = torch.arange(width)[None, :]
        first = torch.tensor(
            [
                self.shared + p - (width - n)
                for p, n in zip(self.past_lengths, self.new_lengths, strict=True)
            ]
        )[:, None]
        return (first + index).clamp(min=0).to(self.bias.device)

    def rows(self) -> list[KV]:
        """Per row, per layer: (keys, values) ``[1, heads, tokens, dim]`` of its whole
        prompt so far (prefix, cached part, new tokens)."""
        out = []
        for r, (past, new) in enumerate(zip(self.past_lengths, self.new_lengths, strict=True)):
            kv = []
            for layer in self.layers:
                pw, end = layer.past_width, layer.keys.shape[2]
                parts = [slice(pw - past, pw), slice(end - new, end)]
                kv.append(
                    tuple(
                        torch.cat([full, *(buf[r : r + 1, :, s] for s in parts)], dim=-2)
                        for full, buf in zip(layer.prefix, (layer.keys, layer.values), strict=True)
                    )
                )
            out.append(kv)
        return out

    def attend(self, layer_idx: int, query: torch.Tensor, scaling: float | None) -> torch.Tensor:
        """``query`` ``[rows, heads, width, dim]``: each row's new tokens against the
        prefix (no mask) and against the row's own positions (``bias``), two flash passes
        merged by their log-sum-exps; returns ``[rows, width, heads, dim]``."""
        layer = self.layers[layer_idx]
        pk, pv = layer.prefix
        rows, heads, width, dim = query.shape
        kv_heads = pk.shape[1]
        per = heads // kv_heads  # query heads per key/value head
        q = query.reshape(rows, kv_heads, per * width, dim)
        flash = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
        flat = q.transpose(0, 1).reshape(1, kv_heads, rows * per * width, dim)
        o1, lse1 = flash(flat, pk, pv, scale=scaling)[:2]
        o1 = o1.view(kv_heads, rows, per * width, dim).transpose(0, 1)
        lse1 = lse1.view(kv_heads, rows, per * width).transpose(0, 1)
        mask = self.bias if per == 1 else self.bias.repeat(1, 1, per, 1)
        o2, lse2 = flash(q, layer.keys, layer.values, attn_mask=mask, scale=scaling)[:2]
        out, _ = merge_by_lse(o1, lse1, o2, lse2)
        return out.reshape(rows, heads, width, dim).transpose(1, 2).to(query.dtype)
