"""HF transformers policy: batched, left-padded ``model.generate`` on one device.

The same generation code serves the rollout engine (``await generate``) and the Ray Serve
app (``encode`` + ``generate_ids``), so prompts are templated and decoded in one place.

- One call: ``await generate`` calls that arrive while the model is busy are merged into
  its next ``generate`` (up to ``max_batch_size`` conversations with equal params).
- Left padding: rows are right-aligned and masked; transformers derives each row's
  position ids from the attention mask (``cumsum - 1``), so a padded row sees the
  positions it would see alone.
- Prefill: each prompt is prefilled at its own length (no compute on padding), reusing the
  keys/values of the prefix it shares with another prompt of the batch (one env family's
  instruction and demonstration); the tails after a shared opening go through the model
  together, one forward pass per group (``agentray.policies.prefill``; CPU); ``generate``
  then runs the last prompt token and decodes.
- Prefix cache (``prefix_cache``): those keys/values are kept across calls, LRU, at most
  ``prefix_cache_tokens`` positions, so a prompt prefills only what no earlier prompt of
  this policy had: its family's opening is computed once per policy, an episode's next turn
  prefills only the new messages.
- Shared-prefix decoding (``shared_prefix``): the batch's rows are grouped by the opening
  they share, each group's opening is held once and each row keeps only its own tail
  (``agentray.policies.shared_prefix``): a decode step reads far fewer keys/values than
  from a padded cache of every row's whole prompt, and no padding between families.
  Greedy rows decode in ``shared_prefix.greedy_decode`` (``generate``'s ``custom_generate``).
- Stop strings end a row once its generated text contains one; max_new_tokens bounds it.

Greedy outputs of a batch equal those of its conversations generated one at a time.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from abc import abstractmethod
from collections import Counter
from contextlib import nullcontext
from functools import partial
from typing import Any

from agentray.model.chat import (
    ContextLimitError,
    StopStrings,
    check_fits,
    encode_chat,
    left_pad,
    truncate_at_stop,
)
from agentray.model.compat import cache_kwarg, decodes_itself
from agentray.model.tiny import TINY_MODEL, resolve_model
from agentray.policies.base import Batch, EpisodeTasks, Policy
from agentray.policies.config import HFConfig
from agentray.policies.prefix_cache import PrefixCache
from agentray.types import Completion, GenerationParams, Message

STAT_KEYS = ("generate_calls", "conversations", "prompt_tokens", "completion_tokens", "errors")
HF_STAT_KEYS = (
    "prefix_cache_hits",
    "prefix_cache_misses",
    "prefix_cache_hit_tokens",
    "prefill_tokens",
    "prefill_s",
    "generate_s",
)
MIN_SHARED_PREFIX = 16  # tokens; shorter shared prefixes are recomputed, not copied


def _take_group(queue: list, max_size: int) -> tuple[list, list]:
    """From ``(batch, params, future)`` items: the first item and the later ones with its
    params that fit ``max_size`` conversations in total; and the rest, in order."""
    params = queue[0][1]
    group, rest, size = [], [], 0
    for item in queue:
        if item[1] == params and (not group or size + len(item[0]) <= max_size):
            group.append(item)
            size += len(item[0])
        else:
            rest.append(item)
    return group, rest


def _left_padded(rows: list, width: int):
    """Batch-1 ``[1, heads, tokens, dim]`` tensors as one ``[rows, heads, width, dim]``,
    right-aligned, zeros before each."""
    first = rows[0]
    out = first.new_zeros((len(rows), first.shape[1], width, first.shape[3]))
    for r, t in enumerate(rows):
        out[r, :, width - t.shape[-2] :] = t[0]
    return out


class ChatTemplatePolicy(Policy):
    """A local model behind a HF tokenizer: conversations are templated with the model's
    chat template into token ids, and ``generate_ids`` turns token ids into Completions.
    Subclasses set ``tokenizer`` and ``context_window`` and implement ``generate_ids``."""

    tokenizer: Any
    context_window: int = 0
    max_batch_size: int = 32
    _batching: tuple[asyncio.AbstractEventLoop, list, asyncio.Task | None] | None = None

    # -- the Policy contract ------------------------------------------------------------

    def stats(self) -> dict[str, float]:
        """Totals since construction, flat and summable across policy actors: model
        ``generate`` calls, conversations they served, tokens, and conversations that
        failed (templating, context limit)."""
        counts = self._counts()
        out = {key: float(counts[key]) for key in STAT_KEYS}
        out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
        return out

    def _counts(self) -> Counter:
        if "_stat_counts" not in self.__dict__:
            self._stat_counts: Counter = Counter()
        return self._stat_counts

    def _count_call(self, completions: list[Completion]) -> None:
        counts = self._counts()
        counts["generate_calls"] += 1
        counts["conversations"] += len(completions)
        counts["prompt_tokens"] += sum(c.prompt_tokens for c in completions)
        counts["completion_tokens"] += sum(c.completion_tokens for c in completions)

    async def generate(
        self, batch: Batch, params: GenerationParams, tasks: EpisodeTasks = None
    ) -> list[Completion]:
        """Calls that arrive while the model is busy wait and then share its next call
        (up to ``max_batch_size`` conversations with equal params): a caller such as the
        PolicyActor, whose batches arrive a few milliseconds apart, gets one ``generate``
        over all of them instead of a queue of small ones."""
        loop = asyncio.get_running_loop()
        if self._batching is None or self._batching[0] is not loop:
            self._batching = (loop, [], None)
        _, queue, drainer = self._batching
        future = loop.create_future()
        queue.append((batch, params, future))
        if drainer is None or drainer.done():
            self._batching = (loop, queue, loop.create_task(self._drain(queue)))
        return await future

    async def _drain(self, queue: list) -> None:
        while queue:
            group, queue[:] = _take_group(queue, self.max_batch_size)
            conversations = [m for batch, _, _ in group for m in batch]
            out: list[Completion] = []
            error: Exception | None = None
            try:
                # generation blocks for seconds: keep the event loop free meanwhile
                out = await asyncio.to_thread(self.generate_sync, conversations, group[0][1])
            except Exception as e:
                error = e
            start = 0
            for batch, _, future in group:
                if future.done():  # its caller gave up (e.g. a timeout)
                    pass
                elif error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(out[start : start + len(batch)])
                start += len(batch)

    def generate_sync(
        self, batch: list[list[Message]], params: GenerationParams
    ) -> list[Completion]:
        """Template every conversation, generate for the valid ones in batches; a
        conversation that cannot be templated or does not fit gets an error Completion."""
        out: list[Completion | None] = [None] * len(batch)
        prompts: dict[int, list[int]] = {}
        for i, messages in enumerate(batch):
            try:
                prompts[i] = self.encode(messages)
                self.check_fits(len(prompts[i]), params.max_new_tokens)
            except ContextLimitError as e:
                prompts.pop(i, None)
                out[i] = Completion(text="", finish_reason="context_limit", error=str(e))
            except Exception as e:
                prompts.pop(i, None)
                out[i] = Completion(
                    text="", finish_reason="error", error=f"{type(e).__name__}: {e}"
                )
        self._counts()["errors"] += len(batch) - len(prompts)
        for i, completion in zip(
            prompts, self.generate_ids(list(prompts.values()), params), strict=True
        ):
            out[i] = completion
        return [c for c in out if c is not None]

    # -- building blocks (also used by agentray.serve) ----------------------------------

    def encode(self, messages: list[Message]) -> list[int]:
        """Prompt token ids of a conversation, ending with the assistant's turn opening."""
        return encode_chat(self.tokenizer, messages)

    def check_fits(self, prompt_len: int, max_new_tokens: int) -> None:
        check_fits(self.context_window, prompt_len, max_new_tokens)

    @abstractmethod
    def generate_ids(
        self, prompts: list[list[int]], params: GenerationParams
    ) -> list[Completion]: ...


class HFPolicy(ChatTemplatePolicy):
    backend = "hf"

    def __init__(
        self,
        model: str = TINY_MODEL,
        device: str = "cpu",
        max_batch_size: int = 32,
        dtype: str = "auto",
        prefill_per_prompt: bool = True,
        prefix_cache: bool = True,
        prefix_cache_tokens: int = 16384,
        shared_prefix: bool = True,
    ) -> None:
        """``prefill_per_prompt=False`` lets ``generate`` prefill the padded batch itself
        (the plain path; same outputs, more compute on padding and shared prefixes, no
        prefix cache). ``prefix_cache`` keeps prefilled keys/values across calls, at most
        ``prefix_cache_tokens`` positions. ``shared_prefix``: a batch decodes with each
        group's common prefix held once (``agentray.policies.shared_prefix``; models with
        sdpa attention), else from a padded ``StaticCache``."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = model
        self.device = device
        self.max_batch_size = max_batch_size
        self.prefill_per_prompt = prefill_per_prompt
        self.prefix_cache = PrefixCache(prefix_cache_tokens) if prefix_cache else None
        path = resolve_model(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        self.shared_prefix = shared_prefix and self._enable_shared_prefix()
        self.pad_token_id = self._pad_token_id()
        from agentray.policies.prefill import Prefill

        self.prefill = Prefill(self.model, device, self.pad_token_id, batched=self.shared_prefix)
        self.eos_token_ids = self._eos_token_ids()
        self.context_window = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        self._lock = threading.Lock()  # one generate at a time on this model

    def _enable_shared_prefix(self) -> bool:
        """Switch the model to ``SHARED_PREFIX_SDPA`` (sdpa but with a SharedPrefixCache)."""
        from agentray.policies import shared_prefix

        if self.model.config._attn_implementation != "sdpa":
            return False
        self.model.set_attn_implementation(shared_prefix.register())
        return True

    @classmethod
    def from_config(cls, cfg: HFConfig) -> HFPolicy:
        return cls(
            cfg.model,
            device=cfg.device,
            max_batch_size=cfg.max_batch_size,
            dtype=cfg.dtype,
            prefix_cache=cfg.prefix_cache,
            prefix_cache_tokens=cfg.prefix_cache_tokens,
            shared_prefix=cfg.shared_prefix,
        )

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "backend": self.backend, "device": self.device}

    def stats(self) -> dict[str, float]:
        """Besides the common totals: prompts whose prefill reused cached keys/values
        (``prefix_cache_hits``, at least ``MIN_SHARED_PREFIX`` tokens; misses: the others;
        both 0 without the prefix cache), the prompt tokens they reused
        (``prefix_cache_hit_tokens``), the prompt tokens computed (``prefill_tokens``: the
        others, less those shared within a batch without the cache), the positions the cache holds now
        (``prefix_cache_tokens``), and seconds spent prefilling prompts (``prefill_s``) and in
        ``model.generate`` (``generate_s``: the last prompt token and the decode steps; the
        whole prompt too where ``generate`` prefills it)."""
        out = super().stats()
        counts = self._counts()
        out.update({key: float(counts[key]) for key in HF_STAT_KEYS})
        out["prefix_cache_tokens"] = float(self.prefix_cache.tokens if self.prefix_cache else 0)
        return out

    def reset_prefix_cache(self) -> None:
        """Drop every cached prefix (the next prompts prefill from scratch)."""
        if self.prefix_cache is not None:
            with self._lock:
                self.prefix_cache.clear()

    def generate_ids(self, prompts: list[list[int]], params: GenerationParams) -> list[Completion]:
        """Generate for already-encoded prompts, ``max_batch_size`` at a time. Prompts are
        chunked in sorted order, so that similar ones (one env family's) share a chunk:
        longer shared prefixes, less padding."""
        order = sorted(range(len(prompts)), key=prompts.__getitem__)
        out: list[Completion | None] = [None] * len(prompts)
        for start in range(0, len(order), self.max_batch_size):
            rows = order[start : start + self.max_batch_size]
            chunk = self._generate_chunk([prompts[r] for r in rows], params)
            for row, completion in zip(rows, chunk, strict=True):
                out[row] = completion
        return [c for c in out if c is not None]

    def _generate_chunk(
        self, prompts: list[list[int]], params: GenerationParams
    ) -> list[Completion]:
        import torch

        if not prompts:
            return []
        input_ids, attention_mask = left_pad(prompts, self.pad_token_id)
        counts = self._counts()
        with self._lock, torch.inference_mode():
            cache = None
            start = time.perf_counter()
            if self.prefill_per_prompt and (len(prompts) > 1 or self.prefix_cache is not None):
                cache = self._prefilled_cache(prompts, params.max_new_tokens)
            prefilled = time.perf_counter()
            if cache is None:  # generate prefills every prompt whole
                counts["prefill_tokens"] += sum(len(p) for p in prompts)
            sequences = self._model_generate(input_ids, attention_mask, params, cache)
            counts["prefill_s"] += prefilled - start
            counts["generate_s"] += time.perf_counter() - prefilled
        generated = sequences[:, input_ids.shape[1] :].tolist()
        out = [self._completion(p, g, params) for p, g in zip(prompts, generated, strict=True)]
        self._count_call(out)
        return out

    def _model_generate(self, input_ids, attention_mask, params: GenerationParams, cache=None):
        from transformers import StoppingCriteriaList

        sampling = params.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": sampling,
            "pad_token_id": self.pad_token_id,
            "eos_token_id": self.eos_token_ids,
            # a static cache would otherwise trigger torch.compile on GPU, per batch shape
            "disable_compile": True,
        }
        if sampling:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:  # unset the model's own sampling defaults so greedy stays greedy
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:  # ends a row early; the text is cut below either way
            stop = StopStrings(self.tokenizer, params.stop, input_ids.shape[1])
            kwargs["stopping_criteria"] = StoppingCriteriaList([stop])
        if cache is not None:
            kwargs[cache_kwarg(self.model)] = cache
        if not sampling and self._decodes_itself(cache):
            from agentray.policies.shared_prefix import greedy_decode

            kwargs["custom_generate"] = partial(greedy_decode, pad_token_id=self.pad_token_id)
        with self._attention_for(cache):
            return self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                **kwargs,
            ).cpu()

    def _decodes_itself(self, cache: Any) -> bool:
        """Whether ``generate`` runs ``shared_prefix.greedy_decode`` over ``cache``."""
        from agentray.policies.shared_prefix import SharedPrefixCache

        return isinstance(cache, SharedPrefixCache) and decodes_itself(self.model)

    def _attention_for(self, cache: Any) -> Any:
        """The context in which ``generate`` runs: ``SHARED_PREFIX_SDPA`` reads a
        SharedPrefixCache only while it is active (plain sdpa otherwise)."""
        if self.shared_prefix:
            from agentray.policies.shared_prefix import SharedPrefixCache

            if isinstance(cache, SharedPrefixCache):
                return cache.active()
        return nullcontext()

    # -- prefill: each prompt on its own, shared prefixes computed once (and cached) ------

    def _prefilled_cache(self, prompts: list[list[int]], max_new_tokens: int):
        """A cache holding the keys/values of every prompt but its last token: ``generate``
        then runs only the last column and decodes. With ``shared_prefix`` a
        SharedPrefixCache (each group's common prefix once, the rest per row; prompts come
        sorted from ``generate_ids``, so those that share are neighbours), else a
        StaticCache left-padded like ``input_ids``. Each prompt is prefilled at its own
        length (no compute on padding) and reuses the keys/values of the longest prefix it
        shares with an earlier prompt of the batch or, with the prefix cache, of an earlier
        call: episodes of one env family all open with the same instruction and
        demonstration. A single prompt gets a DynamicCache instead (no padding: its decode
        steps need no attention mask, as on the plain path). None (``generate`` prefills the
        padded batch itself) for caches that are not plain full-attention layers, e.g.
        sliding windows."""
        from transformers import DynamicCache, StaticCache
        from transformers.cache_utils import StaticLayer

        width = max(len(p) for p in prompts) - 1
        if min(len(p) for p in prompts) < 2:
            return None
        cache = StaticCache(config=self.model.config, max_cache_len=width + 1 + max_new_tokens)
        if any(type(layer) is not StaticLayer for layer in cache.layers):
            return None
        rows = self._prefill_rows(prompts)
        if rows is None or len(rows[0]) != len(cache.layers):
            return None
        if len(rows) == 1:
            return DynamicCache(ddp_cache_data=rows[0])
        if self.shared_prefix:
            from agentray.policies.shared_prefix import SharedPrefixCache, group_rows

            groups = group_rows(prompts, max_new_tokens, MIN_SHARED_PREFIX)
            return SharedPrefixCache(prompts, rows, groups, max_new_tokens)
        for layer in range(len(cache.layers)):
            keys, values = (_left_padded([row[layer][i] for row in rows], width) for i in (0, 1))
            cache.update(keys, values, layer)
        return cache

    def _prefill_rows(self, prompts: list[list[int]]) -> list[list[tuple]] | None:
        """Per prompt, per layer: (keys, values) of batch 1 over all but its last token
        (``agentray.policies.prefill``). Without the prefix cache, one for this call
        (unbounded: the rows are held anyway)."""
        from agentray.policies.prefill import PrefillCall

        cached = self.prefix_cache
        prefixes = cached if cached is not None else PrefixCache(max_tokens=sys.maxsize)
        call = PrefillCall(prefixes, self._counts(), MIN_SHARED_PREFIX, cached is not None)
        return self.prefill.rows(prompts, call)

    # -- completions ----------------------------------------------------------------------

    def _completion(
        self, prompt: list[int], generated: list[int], params: GenerationParams
    ) -> Completion:
        token_ids, hit_eos = self._cut_at_eos(generated)
        text = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        text, hit_stop = truncate_at_stop(text, params.stop)
        if hit_stop and not hit_eos:
            token_ids = self._cut_at_stop(token_ids, params.stop)
        return Completion(
            text=text,
            finish_reason="stop" if hit_eos or hit_stop else "length",
            prompt_token_ids=list(prompt),
            token_ids=token_ids,
            prompt_tokens=len(prompt),
            completion_tokens=len(token_ids),
        )

    def _cut_at_eos(self, generated: list[int]) -> tuple[list[int], bool]:
        """Ids up to and including the first eos. A row that ended early is followed by
        padding: after an eos it is cut here, after a stop string by ``_cut_at_stop``; a
        row that did neither ran to ``max_new_tokens``, so all its ids are the model's
        (even a generated pad id)."""
        for k, token in enumerate(generated):
            if token in self.eos_token_ids:
                return generated[: k + 1], True
        return generated, False

    def _cut_at_stop(self, token_ids: list[int], stop: list[str]) -> list[int]:
        """The shortest prefix whose text contains a stop string (binary search: containment
        only grows with the prefix)."""
        lo, hi = 1, len(token_ids)
        while lo < hi:
            mid = (lo + hi) // 2
            text = self.tokenizer.decode(token_ids[:mid], skip_special_tokens=True)
            if truncate_at_stop(text, stop)[1]:
                hi = mid
            else:
                lo = mid + 1
        return token_ids[:hi]

    def _pad_token_id(self) -> int:
        tok = self.tokenizer
        for candidate in (tok.pad_token_id, tok.eos_token_id, 0):
            if candidate is not None:
                return int(candidate)
        return 0

    def _eos_token_ids(self) -> list[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        ids = eos if isinstance(eos, list) else [eos]
        return [int(i) for i in ids if i is not None]
