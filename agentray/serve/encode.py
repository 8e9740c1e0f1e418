"""Prompts to token ids in the ingress: the model layer's chat encoder (tokenizer and
context window, no weights), so model replicas only decode."""

from __future__ import annotations

from typing import Any

from agentray.model.chat import ChatEncoder, ContextLimitError
from agentray.model.tiny import resolve_model
from agentray.serve.protocol import APIError


class PromptEncoder(ChatEncoder):
    """The chat encoder with OpenAI-style 400 errors; it generates nothing."""

    def __init__(self, model: str) -> None:
        loaded = ChatEncoder.load(resolve_model(model))
        super().__init__(loaded.tokenizer, loaded.context_window)
        self.name = model
        self.vocab_size = len(self.tokenizer)

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        try:
            return self.encode(messages)  # type: ignore[arg-type]
        except Exception as e:  # e.g. the chat template rejects the role order
            raise APIError(400, f"messages: {e}", param="messages") from e

    def encode_prompts(self, prompt: Any) -> list[list[int]]:
        """A completions ``prompt`` (text, token ids, or a list of either) as token ids,
        one list per choice."""
        if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)):
            prompt = [prompt]
        prompts = []
        for i, item in enumerate(prompt):
            param = "prompt" if len(prompt) == 1 else f"prompt.{i}"
            ids = self.tokenizer.encode(item) if isinstance(item, str) else list(item)
            if not ids:
                raise APIError(400, f"{param}: prompt is empty", param=param)
            bad = [t for t in ids if not 0 <= t < self.vocab_size]
            if bad:
                raise APIError(
                    400,
                    f"{param}: token ids {bad[:5]} are outside the vocabulary "
                    f"(0..{self.vocab_size - 1})",
                    param=param,
                )
            prompts.append(ids)
        return prompts

    def completion_budget(self, prompt: list[int], max_tokens: int, given: bool, param: str) -> int:
        """The most tokens to generate after ``prompt``: ``max_tokens`` when the request gave
        it (a 400 if it does not fit), else the default capped to the room left in the
        context window (as vLLM and OpenAI do)."""
        room = self.context_window - len(prompt)
        if given:
            try:
                self.check_fits(len(prompt), max_tokens)
            except ContextLimitError as e:
                raise APIError(400, str(e), param=param, code="context_length_exceeded") from e
            return max_tokens
        if not self.context_window:
            return max_tokens
        if room > 0:
            return min(max_tokens, room)
        raise APIError(
            400,
            f"prompt of {len(prompt)} tokens leaves no room for a completion in the context "
            f"window of {self.context_window} tokens",
            param=param,
            code="context_length_exceeded",
        )
