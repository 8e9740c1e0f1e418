"""Choosing tokens for the rows of a running batch: greedy, or sampled from each row's own
random generator (seeded from the request's ``seed``, else at random), and the log
probabilities a request asked for.

A row draws exactly one number from its own generator per token, whatever else the batch
holds, so a seeded request gets the same sample alone or batched with any neighbours (its
logits do not depend on them: every row sees only its own tokens).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any


@dataclass
class TokenLogprob:
    """One generated token: its log probability under the model (the raw distribution,
    before temperature and top-p) and the ``top`` most likely ``(token, logprob)`` pairs,
    most likely first."""

    token: int
    logprob: float
    top: list[tuple[int, float]]


def new_generator(seed: int | None) -> Any:
    """A CPU ``torch.Generator`` for one row: seeded with ``seed``, else at random."""
    import torch

    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else secrets.randbits(63))
    return generator


def sample(logits: Any, temperature: float, top_p: float, generator: Any) -> int:
    """One token from ``softmax(logits / temperature)``, restricted to the smallest set of
    tokens whose probability reaches ``top_p`` (nucleus sampling), by inverting the
    cumulative distribution at one uniform draw from ``generator``."""
    import torch

    probs = torch.softmax(logits.float() / temperature, dim=-1)
    order = None
    if top_p < 1.0:
        probs, order = probs.sort(descending=True)
        outside = probs.cumsum(-1) - probs >= top_p
        probs = probs.masked_fill(outside, 0.0)
    cdf = probs.cumsum(-1)
    u = torch.rand((1,), generator=generator).to(cdf.device) * cdf[-1]
    k = min(int(torch.searchsorted(cdf, u, right=True)), cdf.shape[0] - 1)
    return int(order[k]) if order is not None else k


def token_logprobs(logits: Any, tokens: list[int], top: list[int | None]) -> list[Any]:
    """Per row: a ``TokenLogprob`` of its chosen token with its ``top[k]`` most likely
    tokens, or None where ``top[k]`` is None (the row asked for no logprobs)."""
    import torch

    wanted = [k for k, t in enumerate(top) if t is not None]
    if not wanted:
        return [None] * len(tokens)
    index = torch.tensor(wanted, device=logits.device)
    logprobs = torch.log_softmax(logits[index].float(), dim=-1)
    most = max(top[k] for k in wanted)  # type: ignore[type-var]
    top_values, top_ids = logprobs.topk(most, dim=-1) if most else (None, None)
    chosen = logprobs.gather(1, torch.tensor([[tokens[k]] for k in wanted], device=logits.device))
    out: list[Any] = [None] * len(tokens)
    for i, k in enumerate(wanted):
        n = top[k] or 0
        pairs = []
        if n:
            pairs = list(zip(top_ids[i, :n].tolist(), top_values[i, :n].tolist(), strict=True))
        out[k] = TokenLogprob(tokens[k], float(chosen[i, 0]), pairs)
    return out
