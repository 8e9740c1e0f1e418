"""HF transformers policy: batched, left-padded ``model.generate`` on one device.

The same generation code serves the rollout engine (``await generate``) and the Ray Serve
app (``encode`` + ``generate_ids``), so prompts are templated and decoded in one place.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from agentray.model.tiny import TINY_MODEL, resolve_model
from agentray.policies.base import Policy
from agentray.types import Completion, GenerationParams, Message


class ContextLimitError(ValueError):
    """The conversation no longer fits the model's context window (AgentBench's
    ``agent_context_limit``)."""


def chat_messages(messages: list[Message]) -> list[dict[str, str]]:
    """Plain ``{"role", "content"}`` dicts: drops the ``loss`` marker before templating."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def truncate_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Cut ``text`` before the earliest stop string; says whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


class HFPolicy(Policy):
    backend = "hf"

    def __init__(
        self,
        model: str = TINY_MODEL,
        device: str = "cpu",
        max_batch_size: int = 32,
        dtype: str = "auto",
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = model
        self.device = device
        self.max_batch_size = max_batch_size
        path = resolve_model(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        self.pad_token_id = self._pad_token_id()
        self.eos_token_ids = self._eos_token_ids()
        self.context_window = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        self._lock = threading.Lock()  # one generate at a time on this model

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "backend": self.backend, "device": self.device}

    # -- the Policy contract ------------------------------------------------------------

    async def generate(
        self, batch: list[list[Message]], params: GenerationParams
    ) -> list[Completion]:
        # model.generate blocks for seconds: keep the actor's event loop free meanwhile.
        return await asyncio.to_thread(self.generate_sync, batch, params)

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
        for i, completion in zip(
            prompts, self.generate_ids(list(prompts.values()), params), strict=True
        ):
            out[i] = completion
        return [c for c in out if c is not None]

    # -- building blocks (also used by agentray.serve) ----------------------------------

    def encode(self, messages: list[Message]) -> list[int]:
        """Prompt token ids of a conversation, ending with the assistant's turn opening."""
        ids = self.tokenizer.apply_chat_template(
            chat_messages(messages), add_generation_prompt=True, tokenize=True, return_dict=False
        )
        return list(ids)

    def check_fits(self, prompt_len: int, max_new_tokens: int) -> None:
        if self.context_window and prompt_len + max_new_tokens > self.context_window:
            raise ContextLimitError(
                f"prompt of {prompt_len} tokens + max_new_tokens {max_new_tokens} exceeds "
                f"the context window of {self.context_window} tokens"
            )

    def generate_ids(self, prompts: list[list[int]], params: GenerationParams) -> list[Completion]:
        """Generate for already-encoded prompts, ``max_batch_size`` at a time."""
        out: list[Completion] = []
        for start in range(0, len(prompts), self.max_batch_size):
            out.extend(self._generate_chunk(prompts[start : start + self.max_batch_size], params))
        return out

    def _generate_chunk(
        self, prompts: list[list[int]], params: GenerationParams
    ) -> list[Completion]:
        if not prompts:
            return []
        input_ids, attention_mask = self._left_pad(prompts)
        with self._lock:
            sequences = self._model_generate(input_ids, attention_mask, params)
        generated = sequences[:, input_ids.shape[1] :].tolist()
        return [self._completion(p, g, params) for p, g in zip(prompts, generated, strict=True)]

    def _model_generate(self, input_ids, attention_mask, params: GenerationParams):
        import torch

        sampling = params.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "do_sample": sampling,
            "pad_token_id": self.pad_token_id,
            "eos_token_id": self.eos_token_ids,
        }
        if sampling:
            kwargs.update(temperature=params.temperature, top_p=params.top_p, top_k=0)
        else:  # unset the model's own sampling defaults so greedy stays greedy
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.stop:  # stops the sequence early; the text is cut below either way
            kwargs.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        with torch.inference_mode():
            return self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention_mask.to(self.device),
                **kwargs,
            ).cpu()

    def _left_pad(self, prompts: list[list[int]]):
        import torch

        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
            mask[row, width - len(prompt) :] = 1
        return ids, mask

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
        """Ids up to and including the first eos; a sequence that finished early (eos or a
        stop string) is followed by padding, which is never part of the completion."""
        for k, token in enumerate(generated):
            if token in self.eos_token_ids:
                return generated[: k + 1], True
        end = len(generated)
        while end > 0 and generated[end - 1] == self.pad_token_id:
            end -= 1
        return generated[:end], False

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
