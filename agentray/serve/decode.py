"""Continuous batching for the serve app: rows join the running batch at any decode step
and leave it as soon as they are done, so the batch stays full under load and a request
never waits for a whole batch to finish before it starts.

Every step advances each row by one token, so a streamed request sees its text as it is
made. Why not ``HFPolicy.generate_ids`` (one ``model.generate`` per batch): it returns only
when its whole batch is done, so it cannot stream, newcomers wait for the longest row,
and finished rows keep decoding padding. Each row keeps its own sampling params, so one
batch mixes greedy and sampled requests. The final ``Completion`` of a row is built by the
policy's own rules (eos cut, stop-string cut, finish reason), and a greedy row produces
the tokens it would get from ``HFPolicy`` alone (a test checks it).

How rows join: newcomers are prefilled together (left-padded), then their KV cache, mask
and positions are concatenated with the running batch's, padded on the left to a common
width (masked columns, so every row still sees only its own tokens at its own
positions). Columns that no row needs any more are trimmed. A model whose cache layers
are not plain full-attention ones (e.g. sliding windows) runs static batches instead:
newcomers wait until the batch is empty.

Sampling is temperature and top-p per row, from the row's own random generator (seeded by
the request: ``agentray.serve.sampling``); processors from the model's ``generation_config``
(repetition penalty, suppressed tokens) are not applied. A row may ask for the log
probabilities of its tokens (and the most likely alternatives at each step).

A streamed row emits its text as it grows, except an end that could still become a stop
string, so the streamed pieces add up to exactly the final text.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

from agentray.model.chat import left_pad, stop_prefix_len, truncate_at_stop
from agentray.model.compat import cache_kwarg
from agentray.policies.hf import HFPolicy
from agentray.serve.sampling import TokenLogprob, new_generator, sample, token_logprobs
from agentray.types import Completion, GenerationParams


@dataclass
class DecodeRequest:
    """One prompt for the decoder; ``stream`` rows report text deltas at every step.
    ``seed`` seeds the row's sampling; ``logprobs`` asks for each token's log probability
    and that many alternatives (None: no logprobs). ``abandoned`` (set by the replica when
    its caller went away) ends the row at its next step, so a disconnected client stops
    costing compute."""

    prompt: list[int]
    params: GenerationParams
    stream: bool = False
    seed: int | None = None
    logprobs: int | None = None
    abandoned: bool = False


@dataclass
class StepEvent:
    """What one step produced for one row: new text (streamed rows), and the final
    ``Completion`` once the row is done (``delta`` then completes the streamed text).
    ``logprobs``: those of the tokens not reported before (with a streamed delta, the tokens
    it completes; with the completion, the rest of its tokens)."""

    delta: str = ""
    completion: Completion | None = None
    logprobs: list[TokenLogprob] | None = None


class IncrementalText:
    """The text of a growing token list, decoded a few tokens at a time (the offsets trick
    of TGI and vLLM): each new token is decoded together with the previous ones, and a
    token that ends inside a multi-byte character waits for the next."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.ends: list[int] = []  # per token whose text is in ``text``: where its text ends
        self.prefix_offset = 0
        self.read_offset = 0
        self.text = ""

    def add(self, token: int) -> None:
        self.ids.append(token)
        decode = self.tokenizer.decode
        before = decode(self.ids[self.prefix_offset : self.read_offset], skip_special_tokens=True)
        after = decode(self.ids[self.prefix_offset :], skip_special_tokens=True)
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.text += after[len(before) :]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            self.ends += [len(self.text)] * (len(self.ids) - len(self.ends))

    def tokens_within(self, length: int) -> int:
        """How many of the first tokens have all their text within ``text[:length]``."""
        return bisect_right(self.ends, length)


@dataclass
class _Row:
    key: Any  # the caller's handle for this row's events
    request: DecodeRequest
    text: IncrementalText | None
    generator: Any = None  # sampled rows: the row's own torch.Generator
    generated: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    reported: int = 0  # logprobs sent with streamed deltas
    emitted: str = ""  # streamed so far; always a prefix of the final text
    done: bool = False

    def unreported(self, upto: int) -> list[TokenLogprob] | None:
        """The logprobs of tokens ``reported:upto`` (None: the row asked for none)."""
        if self.request.logprobs is None:
            return None
        out = self.logprobs[self.reported : upto]
        self.reported = max(self.reported, upto)
        return out


class Decoder:
    """The running batch of one model replica. ``advance(newcomers)`` decodes one step for
    the running rows, then admits the newcomers (prefill: their first token); it returns
    ``(key, StepEvent)`` for each row with something to report."""

    def __init__(self, policy: HFPolicy, max_rows: int) -> None:
        self.policy = policy
        self.model = policy.model
        self.max_rows = max_rows
        self.rows: list[_Row] = []  # one per batch row of the cache
        self.cache: Any = None
        self.attention_mask: Any = None
        self.positions: Any = None  # position of each row's last token
        self.last_tokens: Any = None
        self.joinable = True  # False: the cache cannot be merged, batches are static
        self.steps = 0  # decode steps (forward passes over the running rows)
        self.row_steps = 0  # rows summed over decode steps: mean batch = row_steps / steps
        self.prefills = 0  # forward passes over newcomers' prompts
        self.abandoned = 0  # rows ended early because their caller went away

    @property
    def room(self) -> int:
        """How many newcomers the next ``advance`` may admit."""
        if self.rows and not self.joinable:
            return 0
        return self.max_rows - len(self.rows)

    def advance(self, newcomers: list[tuple[Any, DecodeRequest]]) -> list[tuple[Any, StepEvent]]:
        import torch

        events: list[tuple[Any, StepEvent]] = []
        with torch.inference_mode():
            if self.rows:
                events += self._step()
            if newcomers:
                events += self._admit(newcomers)
        return events

    def reset(self) -> list[Any]:
        """Drop every row (after an error); returns their keys."""
        keys = [row.key for row in self.rows]
        self.rows, self.cache = [], None
        return keys

    def _step(self) -> list[tuple[Any, StepEvent]]:
        import torch

        ones = torch.ones_like(self.attention_mask[:, :1])
        self.attention_mask = torch.cat([self.attention_mask, ones], dim=1)
        self.positions = self.positions + 1
        self.steps += 1
        self.row_steps += len(self.rows)
        logits = self._forward(
            self.cache, self.last_tokens[:, None], self.attention_mask, self.positions[:, None]
        )
        return self._advance_rows(logits)

    def _admit(self, newcomers: list[tuple[Any, DecodeRequest]]) -> list[tuple[Any, StepEvent]]:
        tokenizer = self.policy.tokenizer
        rows = [
            _Row(
                key,
                r,
                IncrementalText(tokenizer) if r.stream or r.params.stop else None,
                new_generator(r.seed) if r.params.temperature > 0 else None,
            )
            for key, r in newcomers
        ]
        input_ids, mask = left_pad([r.request.prompt for r in rows], self.policy.pad_token_id)
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        device = self.policy.device
        input_ids, mask, positions = input_ids.to(device), mask.to(device), positions.to(device)
        cache = _new_cache()
        self.prefills += 1
        logits = self._forward(cache, input_ids, mask, positions)
        if self.rows:
            self._merge(cache, mask, positions[:, -1])
        else:
            self.cache, self.attention_mask, self.positions = cache, mask, positions[:, -1]
            self.joinable = mergeable(cache)
        self.rows += rows
        return self._advance_rows(logits, first=len(self.rows) - len(rows))

    def _forward(self, cache, input_ids, attention_mask, position_ids):
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            use_cache=True,
            logits_to_keep=1,
            **{cache_kwarg(self.model): cache},
        )
        return out.logits[:, -1, :]

    def _advance_rows(self, logits, first: int = 0) -> list[tuple[Any, StepEvent]]:
        """Choose the next token of rows ``first:`` (``logits`` has one line per row),
        report it, and drop finished rows from the batch."""
        import torch

        rows = self.rows[first:]
        tokens = self._choose(logits, rows)
        logprobs = token_logprobs(logits, tokens, [row.request.logprobs for row in rows])
        events = []
        for row, token, logprob in zip(rows, tokens, logprobs, strict=True):
            if logprob is not None:
                row.logprobs.append(logprob)
            event = self._add(row, token)
            if event is not None:
                events.append((row.key, event))
        next_tokens = torch.tensor(tokens, dtype=torch.long, device=logits.device)
        if first:
            next_tokens = torch.cat([self.last_tokens, next_tokens])
        self.last_tokens = next_tokens
        if any(row.done for row in rows):
            self._keep([k for k, row in enumerate(self.rows) if not row.done])
        return events

    def _keep(self, keep: list[int]) -> None:
        """Keep batch rows ``keep``, and trim the columns left of every kept row's first
        token (padding no row needs)."""
        import torch

        self.rows = [self.rows[k] for k in keep]
        if not keep:
            self.cache = None
            return
        index = torch.tensor(keep, dtype=torch.long, device=self.attention_mask.device)
        mask = self.attention_mask[index]
        if self.joinable:
            start = int((mask.sum(dim=0) > 0).nonzero()[0])
            kv = [(k[index, :, start:], v[index, :, start:]) for k, v in _layers(self.cache)]
            _set_layers(self.cache, kv)
            self.attention_mask = mask[:, start:]
        else:
            self.cache.batch_select_indices(index)
            self.attention_mask = mask
        self.positions = self.positions[index]
        self.last_tokens = self.last_tokens[index]

    def _merge(self, cache: Any, mask: Any, positions: Any) -> None:
        """Append prefilled rows to the running batch, both padded on the left to one width."""
        import torch
        import torch.nn.functional as F

        width = max(mask.shape[1], self.attention_mask.shape[1])

        def pad(t, dim_from_end: int):
            missing = width - t.shape[-dim_from_end]
            if not missing:
                return t
            spec = [0, 0] * (dim_from_end - 1) + [missing, 0]
            return F.pad(t, spec)

        running, new = _layers(self.cache), _layers(cache)
        kv = [
            (torch.cat([pad(k1, 2), pad(k2, 2)]), torch.cat([pad(v1, 2), pad(v2, 2)]))
            for (k1, v1), (k2, v2) in zip(running, new, strict=True)
        ]
        _set_layers(self.cache, kv)
        self.attention_mask = torch.cat([pad(self.attention_mask, 1), pad(mask, 1)])
        self.positions = torch.cat([self.positions, positions])

    def _choose(self, logits, rows: list[_Row]) -> list[int]:
        chosen = logits.argmax(dim=-1).tolist()
        for k, row in enumerate(rows):
            params = row.request.params
            if row.generator is not None:
                chosen[k] = sample(logits[k], params.temperature, params.top_p, row.generator)
        return chosen

    def _add(self, row: _Row, token: int) -> StepEvent | None:
        params = row.request.params
        row.generated.append(token)
        if row.text is not None:
            row.text.add(token)
        finished = (
            row.request.abandoned
            or token in self.policy.eos_token_ids
            or len(row.generated) >= params.max_new_tokens
            or (row.text is not None and truncate_at_stop(row.text.text, params.stop)[1])
        )
        if finished:
            row.done = True
            self.abandoned += row.request.abandoned
            completion = self.policy._completion(row.request.prompt, row.generated, params)
            delta = ""
            if row.request.stream and completion.text.startswith(row.emitted):
                delta = completion.text[len(row.emitted) :]
            return StepEvent(delta, completion, row.unreported(completion.completion_tokens))
        if not row.request.stream or row.text is None:
            return None
        text = row.text.text
        safe = text[: len(text) - stop_prefix_len(text, params.stop)]
        if len(safe) <= len(row.emitted):
            return None
        delta, row.emitted = safe[len(row.emitted) :], safe
        return StepEvent(delta, logprobs=row.unreported(row.text.tokens_within(len(safe))))


def _new_cache() -> Any:
    from transformers import DynamicCache

    return DynamicCache()


def _layers(cache: Any) -> list[tuple[Any, Any]]:
    """(keys, values) per layer, each ``[batch, heads, width, head_dim]``."""
    return [(layer.keys, layer.values) for layer in cache.layers]


def _set_layers(cache: Any, kv: list[tuple[Any, Any]]) -> None:
    """Replace each layer's keys and values (plain ``DynamicLayer``s: see ``mergeable``)."""
    for layer, (keys, values) in zip(cache.layers, kv, strict=True):
        layer.keys, layer.values = keys, values


def mergeable(cache: Any) -> bool:
    """Whether rows of this cache can be merged and trimmed: plain full-attention layers."""
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in cache.layers)
