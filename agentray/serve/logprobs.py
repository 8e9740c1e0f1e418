"""Log probabilities in OpenAI's two formats, from the decoder's ``TokenLogprob``s: chat
(``{"content": [{token, logprob, bytes, top_logprobs}]}``) and text completions (``tokens``,
``token_logprobs``, ``top_logprobs``, ``text_offset``).

A token's ``bytes`` are its own bytes (byte-level BPE or byte-fallback tokens may hold part
of a character: the bytes of consecutive tokens join into the text); its ``token`` is those
bytes as text, with U+FFFD for an incomplete character. Special tokens (eos) are reported
with their logprob but empty text and bytes, as they are not part of the text.
"""

from __future__ import annotations

import codecs
import re
from functools import lru_cache
from typing import Any, Literal

from agentray.serve.sampling import TokenLogprob

_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@lru_cache(maxsize=1)
def _byte_level_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: the printable character that stands for each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


class TokenStrings:
    """The bytes and text of single tokens of one tokenizer (cached)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
        self.byte_level = type(decoder).__name__ == "ByteLevel"
        self.special = set(tokenizer.all_special_ids)
        self._cache: dict[int, bytes] = {}

    def bytes_of(self, token: int) -> bytes:
        if token not in self._cache:
            self._cache[token] = self._bytes(token)
        return self._cache[token]

    def text_of(self, token: int) -> str:
        return self.bytes_of(token).decode("utf-8", errors="replace")

    def _bytes(self, token: int) -> bytes:
        piece = self.tokenizer.convert_ids_to_tokens(token)
        if piece is None:
            return b""
        if token in self.special:  # not part of the text (eos)
            return b""
        alphabet = _byte_level_alphabet()
        if self.byte_level and all(c in alphabet for c in piece):
            return bytes(alphabet[c] for c in piece)
        fallback = _BYTE_FALLBACK.fullmatch(piece)
        if fallback:
            return bytes([int(fallback.group(1), 16)])
        return piece.replace("\u2581", " ").encode()  # sentencepiece's word boundary


class ChoiceLogprobs:
    """The logprobs object of one choice, built from its tokens' ``TokenLogprob``s as they
    arrive (all at once, or chunk by chunk in a stream: text offsets carry on)."""

    def __init__(self, kind: Literal["chat", "text"], strings: TokenStrings) -> None:
        self.kind = kind
        self.strings = strings
        self.offset = 0  # text completions: characters before the next token
        self.chars = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def format(self, entries: list[TokenLogprob] | None) -> dict[str, Any] | None:
        if entries is None:
            return None
        if self.kind == "chat":
            return {"content": [self._chat_entry(e) for e in entries], "refusal": None}
        return self._text(entries)

    def _pair(self, token: int, logprob: float) -> dict[str, Any]:
        data = self.strings.bytes_of(token)
        return {"token": self.strings.text_of(token), "logprob": logprob, "bytes": list(data)}

    def _chat_entry(self, entry: TokenLogprob) -> dict[str, Any]:
        top = [self._pair(t, lp) for t, lp in entry.top]
        return {**self._pair(entry.token, entry.logprob), "top_logprobs": top}

    def _text(self, entries: list[TokenLogprob]) -> dict[str, Any]:
        """The legacy format: ``top_logprobs`` maps token text to logprob (the chosen token
        is always in it), ``text_offset`` is where each token starts in the completion."""
        out: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": []}
        out["text_offset"] = []
        for entry in entries:
            text = self.strings.text_of(entry.token)
            out["tokens"].append(text)
            out["token_logprobs"].append(entry.logprob)
            top = {self.strings.text_of(t): lp for t, lp in entry.top}
            top.setdefault(text, entry.logprob)
            out["top_logprobs"].append(top)
            out["text_offset"].append(self.offset)
            self.offset += len(self.chars.decode(self.strings.bytes_of(entry.token)))
        return out
