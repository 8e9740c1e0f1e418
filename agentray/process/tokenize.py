"""Conversations -> (input_ids, labels) with the model's own chat template.

The text is rendered once per turn prefix with ``apply_chat_template``; each assistant
turn owns the characters its prefix adds (its content and the template's closing tokens,
eos included). The whole text is tokenized once, so ``input_ids`` are exactly what
``apply_chat_template(messages, tokenize=True)`` gives, and a token gets a label when it
starts inside an assistant turn whose ``loss`` is not false; everything else is -100.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from agentray.model.templates import apply_chat_template_preset
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


class TemplateMismatch(RuntimeError):
    """Our token ids differ from ``apply_chat_template``'s: the masks cannot be trusted, so
    the run stops (not a ValueError: it must not be set aside as one bad record)."""


def check_against_template(tokenizer, chat: list[dict[str, str]], ids: list[int]) -> None:
    """Token-for-token comparison with ``apply_chat_template(chat, tokenize=True)``."""
    expected = tokenizer.apply_chat_template(chat, tokenize=True)
    expected = list(expected["input_ids"] if hasattr(expected, "keys") else expected)
    if expected != list(ids):
        at = next((i for i, (a, b) in enumerate(zip(ids, expected, strict=False)) if a != b), None)
        at = min(len(ids), len(expected)) if at is None else at
        raise TemplateMismatch(
            f"token ids differ from apply_chat_template at position {at} "
            f"(ours {len(ids)} tokens, template {len(expected)}): "
            f"ours {tokenizer.decode(list(ids)[at : at + 8])!r} vs "
            f"template {tokenizer.decode(expected[at : at + 8])!r}"
        )


def load_tokenizer(model: str, chat_template: str = "model"):
    """The model's tokenizer with the ``chat_template`` preset applied, checked for masking."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(model))
    apply_chat_template_preset(tokenizer, chat_template)
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


TooLong = Literal["cut", "split", "drop"]


def encode_conversation(
    tokenizer, conversations: list[dict[str, Any]], max_seq_len: int
) -> dict[str, Any]:
    """Token ids, labels and counts for one AgentInstruct/ShareGPT conversation; one longer
    than ``max_seq_len`` is cut after the last assistant turn that fits."""
    return _encode_messages(tokenizer, to_messages(conversations), max_seq_len)[0]


def encode_pieces(
    tokenizer,
    conversations: list[dict[str, Any]],
    max_seq_len: int,
    too_long: TooLong = "cut",
    verify: bool = False,
) -> list[dict[str, Any]]:
    """The training examples one conversation gives when it is longer than ``max_seq_len``:
    ``cut`` keeps the first part (up to the last assistant turn that fits), ``split`` makes
    consecutive examples of it (each starting at a user turn, as FastChat splits ShareGPT),
    ``drop`` rejects it. A cut never falls inside a turn."""
    messages = to_messages(conversations)
    if too_long == "cut":
        return [_encode_messages(tokenizer, messages, max_seq_len, verify)[0]]
    system = messages[:1] if messages and messages[0]["role"] == "system" else []
    pieces = []
    while messages:
        encoded, used = _encode_messages(tokenizer, messages, max_seq_len, verify)
        if encoded["truncated"] and too_long == "drop":
            raise RecordRejected(f"too long: over max_seq_len={max_seq_len} (too_long=drop)")
        pieces.append(encoded | {"truncated": False} if too_long == "split" else encoded)
        rest = _from_next_user_turn(messages[used:])
        messages = system + rest if rest else []  # every piece keeps the system prompt
    return pieces


def takes_system_turn(tokenizer) -> bool:
    """Whether the chat template renders a system message in place (some refuse one)."""
    chat = [{"role": "system", "content": "probe system prompt"}, *_PROBE[:2]]
    try:
        return "probe system prompt" in prefix_texts(tokenizer, chat)[-1]
    except Exception:  # noqa: BLE001 - a template's raise_exception, or one not prefix-stable
        return False


def fold_system_turn(conversations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A leading system turn joined to the first human turn, for a template that has no
    system role (as ``records.to_conversations`` folds one)."""
    if len(conversations) < 2 or conversations[0]["from"] != "system":
        return conversations
    system, first, *rest = conversations
    return [first | {"value": f"{system['value']}\n\n{first['value']}"}, *rest]


def _from_next_user_turn(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    start = next((i for i, m in enumerate(messages) if m["role"] == "user"), len(messages))
    rest = messages[start:]
    return rest if any(m["role"] == "assistant" for m in rest) else []


def _encode_messages(
    tokenizer, messages, max_seq_len: int, verify: bool = False
) -> tuple[dict[str, Any], int]:
    """(the example, how many of ``messages`` it holds); ``verify`` compares the ids with
    ``apply_chat_template`` first."""
    chat = [{"role": m["role"], "content": m["content"]} for m in messages]
    texts = prefix_texts(tokenizer, chat)
    encoded = tokenizer(texts[-1], add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
    if verify:
        check_against_template(tokenizer, chat, ids)
    spans = _loss_spans(messages, texts)
    labels = [
        tok if any(s <= start < e for s, e in spans) else IGNORE_INDEX
        for tok, (start, _) in zip(ids, offsets, strict=True)
    ]
    truncated = len(ids) > max_seq_len
    used = len(messages)
    if truncated:
        cut, used = _turn_boundary_cut(messages, texts, offsets, max_seq_len)
        ids, labels = ids[:cut], labels[:cut]
    num_loss = sum(1 for label in labels if label != IGNORE_INDEX)
    if num_loss == 0:
        raise RecordRejected("no assistant tokens to train on within max_seq_len")
    example = {
        "input_ids": ids,
        "labels": labels,
        "num_tokens": len(ids),
        "num_loss_tokens": num_loss,
        "truncated": truncated,
    }
    return example, used


def _loss_spans(messages: list[dict[str, Any]], texts: list[str]) -> list[tuple[int, int]]:
    starts = [0, *(len(t) for t in texts[:-1])]
    return [
        (start, len(text))
        for message, start, text in zip(messages, starts, texts, strict=True)
        if message["role"] == "assistant" and message.get("loss", True)
    ]


def _turn_boundary_cut(messages, texts, offsets, max_seq_len: int) -> tuple[int, int]:
    """(tokens, messages) to keep: the longest prefix that ends after an assistant turn and
    fits."""
    best, used = 0, 0
    for k, (message, text) in enumerate(zip(messages, texts, strict=True), start=1):
        if message["role"] != "assistant":
            continue
        n_tokens = sum(1 for start, _ in offsets if start < len(text))
        if n_tokens > max_seq_len:
            break
        best, used = n_tokens, k
    if best == 0:
        raise RecordRejected(
            f"too long: the first exchange alone exceeds max_seq_len={max_seq_len}"
        )
    return best, used


class ConversationTokenizer:
    """A Ray Data ``map_batches`` callable: loads the tokenizer once per actor.

    Every ``verify_every``-th record (0: none) is checked token for token against
    ``apply_chat_template``; a mismatch stops the run (``TemplateMismatch``).

    ``too_long`` says per source (agent, general) what happens to a conversation longer
    than ``max_seq_len`` (see ``encode_pieces``); split pieces get ids ``<id>#1``, ``#2``..
    """

    def __init__(
        self,
        model: str,
        max_seq_len: int,
        chat_template: str = "model",
        too_long: dict[str, TooLong] | None = None,
        verify_every: int = 0,
    ) -> None:
        self.tokenizer = load_tokenizer(model, chat_template)
        self.system_turns = takes_system_turn(self.tokenizer)
        self.max_seq_len = max_seq_len
        self.too_long = too_long or {}
        self.verify_every = verify_every
        self._seen = 0

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """A batch of ``{id, source, family, conversations}`` (and ``seq``: the record's
        place in the run, which picks the records verified; without it, this actor's count)."""
        columns = _as_columns(batch)
        out: dict[str, list] = {k: [] for k in _OUTPUT_COLUMNS}
        for i in range(len(columns["id"])):
            row = {k: columns[k][i] for k in ("id", "source", "family")}
            seq = columns["seq"][i] if "seq" in columns else self._seen
            self._seen += 1
            for piece in self._pieces(row, columns["conversations"][i], seq):
                for key in _OUTPUT_COLUMNS:
                    out[key].append(piece[key])
        return out

    def _pieces(self, row: dict[str, Any], conversations: str, seq: int) -> list[dict[str, Any]]:
        policy = self.too_long.get(row["source"], "cut")
        verify = bool(self.verify_every) and seq % self.verify_every == 0
        turns = json.loads(conversations)
        turns = turns if self.system_turns else fold_system_turn(turns)
        try:
            pieces = encode_pieces(self.tokenizer, turns, self.max_seq_len, policy, verify)
        except ValueError as e:  # RecordRejected, TemplateError, unknown speaker
            return [row | _REJECTED_EXAMPLE | {"reject_reason": str(e)}]
        return [
            row | piece | {"id": row["id"] if k == 0 else f"{row['id']}#{k}", "reject_reason": ""}
            for k, piece in enumerate(pieces)
        ]


def _as_columns(batch: Any) -> dict[str, list]:
    """A pyarrow batch (or a dict of columns) as plain Python lists."""
    if hasattr(batch, "to_pydict"):
        return batch.to_pydict()
    return {k: list(v) for k, v in batch.items()}


_CACHED: dict[tuple, ConversationTokenizer] = {}


def tokenize_batch(batch: Any, **kwargs: Any) -> dict[str, list]:
    """``ConversationTokenizer(**kwargs)(batch)`` as a Ray Data task: the tokenizer is loaded
    once per worker process and kept, so a later run (or batch) on a warm worker starts at
    once, where an actor pool would load it again in every new actor."""
    return cached_tokenizer(**kwargs)(batch)


def warm_tokenizer(**kwargs: Any) -> None:
    """Load ``cached_tokenizer(**kwargs)`` in this process ahead of the batches."""
    cached_tokenizer(**kwargs)


def cached_tokenizer(**kwargs: Any) -> ConversationTokenizer:
    """This process's ``ConversationTokenizer(**kwargs)``, loaded on first use."""
    key = tuple(sorted((k, repr(v)) for k, v in kwargs.items()))
    if key not in _CACHED:
        _CACHED[key] = ConversationTokenizer(**kwargs)
    return _CACHED[key]


_REJECTED_EXAMPLE = {
    "input_ids": [],
    "labels": [],
    "num_tokens": 0,
    "num_loss_tokens": 0,
    "truncated": False,
}


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
