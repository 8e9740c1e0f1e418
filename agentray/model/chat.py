"""The chat encoder: a conversation to prompt token ids with the model's own chat template,
the context-window check, stop strings and left padding. Policies (HF, vLLM) and the Serve
app share it, so a prompt is templated the same way wherever it is generated."""

from __future__ import annotations

from typing import Any

from agentray.types import Message


class ContextLimitError(ValueError):
    """The conversation no longer fits the model's context window (AgentBench's
    ``agent_context_limit``)."""


def chat_messages(messages: list[Message]) -> list[dict[str, str]]:
    """Plain ``{"role", "content"}`` dicts: drops the ``loss`` marker before templating."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def encode_chat(tokenizer: Any, messages: list[Message]) -> list[int]:
    """Prompt token ids of a conversation, ending with the assistant's turn opening."""
    ids = tokenizer.apply_chat_template(
        chat_messages(messages), add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return list(ids)


def check_fits(context_window: int, prompt_len: int, max_new_tokens: int) -> None:
    """Raises ContextLimitError when prompt + completion exceed ``context_window`` (0: no
    limit known)."""
    if context_window and prompt_len + max_new_tokens > context_window:
        raise ContextLimitError(
            f"prompt of {prompt_len} tokens + max_new_tokens {max_new_tokens} exceeds "
            f"the context window of {context_window} tokens"
        )


class ChatEncoder:
    """A model's tokenizer and context window, loaded without its weights."""

    def __init__(self, tokenizer: Any, context_window: int) -> None:
        self.tokenizer = tokenizer
        self.context_window = context_window

    @classmethod
    def load(cls, path: str) -> ChatEncoder:
        from transformers import AutoConfig, AutoTokenizer

        config = AutoConfig.from_pretrained(path)
        window = int(getattr(config, "max_position_embeddings", 0) or 0)
        return cls(AutoTokenizer.from_pretrained(path), window)

    def encode(self, messages: list[Message]) -> list[int]:
        return encode_chat(self.tokenizer, messages)

    def check_fits(self, prompt_len: int, max_new_tokens: int) -> None:
        check_fits(self.context_window, prompt_len, max_new_tokens)


def left_pad(prompts: list[list[int]], pad_token_id: int):
    """``(input_ids, attention_mask)``: prompts right-aligned, padding masked out."""
    import torch

    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        mask[row, width - len(prompt) :] = 1
    return ids, mask


class StopStrings:
    """A ``generate`` stopping criterion: a row is done once its generated text (never the
    prompt) contains a stop string, the same test the completion is cut with afterwards.
    Each step decodes only the last few tokens of each row, and confirms a hit on the
    row's whole text."""

    def __init__(self, tokenizer: Any, stop: list[str], prompt_width: int) -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.prompt_width = prompt_width
        # a stop string of b bytes lies within the last b tokens (each holds >= 1 byte)
        self.window = max((len(s.encode()) for s in self.stop), default=0) + 2
        self.done: list[bool] = []

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        generated = input_ids[:, self.prompt_width :]
        if not self.done:
            self.done = [False] * generated.shape[0]
        rows = [r for r, done in enumerate(self.done) if not done]
        tails = generated[rows, -self.window :].tolist()
        for row, text in zip(rows, self._decode(tails), strict=True):
            if truncate_at_stop(text, self.stop)[1]:
                full = self._decode([generated[row].tolist()])[0]
                self.done[row] = truncate_at_stop(full, self.stop)[1]
        return torch.tensor(self.done, dtype=torch.bool, device=input_ids.device)

    def _decode(self, rows: list[list[int]]) -> list[str]:
        return self.tokenizer.batch_decode(rows, skip_special_tokens=True)


def truncate_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    """Cut ``text`` before the earliest stop string; says whether one was found."""
    cuts = [i for i in (text.find(s) for s in stop if s) if i >= 0]
    return (text[: min(cuts)], True) if cuts else (text, False)


def stop_prefix_len(text: str, stop: list[str]) -> int:
    """Length of the longest end of ``text`` that begins a stop string (and is shorter than
    it): what a stream must hold back, since the next tokens may complete that stop string.
    Everything before it can never become part of a stop string."""
    held = 0
    for s in stop:
        for k in range(min(len(s) - 1, len(text)), held, -1):
            if text.endswith(s[:k]):
                held = k
                break
    return held
