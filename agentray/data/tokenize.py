"""Conversations -> (input_ids, labels) with the model's own chat template.

The text is rendered once per turn prefix with ``apply_chat_template``; each assistant
turn owns the characters its prefix adds (its content and the template's closing tokens,
eos included). The whole text is tokenized once, so ``input_ids`` are exactly what
``apply_chat_template(messages, tokenize=True)`` gives, and a token gets a label when it
starts inside an assistant turn whose ``loss`` is not false; everything else is -100.
"""

from __future__ import annotations

import json
from typing import Any

from agentray.model.tiny import resolve_model
from agentray.records import to_messages

IGNORE_INDEX = -100
_PROBE = [
    {"role": "user", "content": "probe question one"},
    {"role": "assistant", "content": "probe answer one"},
    {"role": "user", "content": "probe question two"},
    {"role": "assistant", "content": "probe answer two"},
]


class TemplateError(ValueError):
    """The chat template cannot be used to place loss masks on turn boundaries."""


class RecordRejected(ValueError):
    """A record that cannot become a training example; the message is the reason."""


def load_tokenizer(model: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(model))
    check_template(tokenizer)
    return tokenizer


def check_template(tokenizer) -> None:
    """Fail early, with the reason, on a tokenizer whose masks could not be exact."""
    if not getattr(tokenizer, "is_fast", False):
        raise TemplateError("a fast tokenizer is needed (character offsets place the loss masks)")
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError("the tokenizer has no chat_template; set one before processing")
    texts = prefix_texts(tokenizer, _PROBE)
    for message, start, end in zip(_PROBE, ["", *texts[:-1]], texts, strict=True):
        added = end[len(start) :]
        if message["content"] not in added:
            raise TemplateError(
                f"the chat template does not render {message['role']} turns in place: "
                f"{message['content']!r} not in {added!r}"
            )


def prefix_texts(tokenizer, chat: list[dict[str, str]]) -> list[str]:
    """The rendered text of every turn prefix; each must extend the one before."""
    texts: list[str] = []
    for k in range(1, len(chat) + 1):
        text = tokenizer.apply_chat_template(chat[:k], tokenize=False)
        if texts and not text.startswith(texts[-1]):
            raise TemplateError(
                f"the chat template is not prefix-stable at turn {k}: rendering more turns "
                "changes earlier text, so turn boundaries cannot be located"
            )
        texts.append(text)
    return texts


def encode_conversation(
    tokenizer, conversations: list[dict[str, Any]], max_seq_len: int
) -> dict[str, Any]:
    """Token ids, labels and counts for one AgentInstruct/ShareGPT conversation."""
    messages = to_messages(conversations)
    chat = [{"role": m["role"], "content": m["content"]} for m in messages]
    texts = prefix_texts(tokenizer, chat)
    encoded = tokenizer(texts[-1], add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    spans = _loss_spans(messages, texts)
    labels = [
        tok if any(s <= start < e for s, e in spans) else IGNORE_INDEX
        for tok, (start, _) in zip(ids, offsets, strict=True)
    ]
    truncated = len(ids) > max_seq_len
    if truncated:
        cut = _turn_boundary_cut(messages, texts, offsets, max_seq_len)
        ids, labels = ids[:cut], labels[:cut]
    num_loss = sum(1 for label in labels if label != IGNORE_INDEX)
    if num_loss == 0:
        raise RecordRejected("no assistant tokens to train on within max_seq_len")
    return {
        "input_ids": ids,
        "labels": labels,
        "num_tokens": len(ids),
        "num_loss_tokens": num_loss,
        "truncated": truncated,
    }


def _loss_spans(messages: list[dict[str, Any]], texts: list[str]) -> list[tuple[int, int]]:
    starts = [0, *(len(t) for t in texts[:-1])]
    return [
        (start, len(text))
        for message, start, text in zip(messages, starts, texts, strict=True)
        if message["role"] == "assistant" and message.get("loss", True)
    ]


def _turn_boundary_cut(messages, texts, offsets, max_seq_len: int) -> int:
    """Tokens to keep: the longest prefix that ends after an assistant turn and fits."""
    best = 0
    for message, text in zip(messages, texts, strict=True):
        if message["role"] != "assistant":
            continue
        n_tokens = sum(1 for start, _ in offsets if start < len(text))
        if n_tokens > max_seq_len:
            break
        best = n_tokens
    if best == 0:
        raise RecordRejected(
            f"too long: the first exchange alone exceeds max_seq_len={max_seq_len}"
        )
    return best


class ConversationTokenizer:
    """A Ray Data ``map_batches`` callable: loads the tokenizer once per actor."""

    def __init__(self, model: str, max_seq_len: int) -> None:
        self.tokenizer = load_tokenizer(model)
        self.max_seq_len = max_seq_len

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, list] = {k: [] for k in _OUTPUT_COLUMNS}
        for i in range(len(batch["id"])):
            row = {"id": batch["id"][i], "source": batch["source"][i], "family": batch["family"][i]}
            try:
                row |= encode_conversation(
                    self.tokenizer, json.loads(batch["conversations"][i]), self.max_seq_len
                )
                row["reject_reason"] = ""
            except ValueError as e:  # RecordRejected, TemplateError, unknown speaker
                row |= {
                    "input_ids": [],
                    "labels": [],
                    "num_tokens": 0,
                    "num_loss_tokens": 0,
                    "truncated": False,
                    "reject_reason": str(e),
                }
            for key in _OUTPUT_COLUMNS:
                out[key].append(row[key])
        return out


# What the training set stores per example; the tokenizer stage adds reject_reason.
TRAIN_COLUMNS = (
    "id",
    "source",
    "family",
    "input_ids",
    "labels",
    "num_tokens",
    "num_loss_tokens",
    "truncated",
)
_OUTPUT_COLUMNS = (*TRAIN_COLUMNS, "reject_reason")
