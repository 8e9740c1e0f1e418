"""Near-duplicate detection as in Self-Instruct (Wang et al., 2022): ROUGE-L between the
normalised word sequences of two instructions; a new one whose ROUGE-L F1 with any known
one reaches the threshold (0.7 there) is a near-duplicate.

ROUGE-L F1 is at most the multiset word-overlap F1 (``2·|A∩B| / (|A|+|B|)``), so a cheap
overlap test skips most of the quadratic LCS computations.
"""

from __future__ import annotations

import re
from collections import Counter


def words(text: str) -> list[str]:
    """Lower-cased words and numbers; punctuation and quoting are ignored."""
    return re.findall(r"[a-z0-9]+(?:\.[0-9]+)?", text.lower())


def lcs_length(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    row = [0] * (len(b) + 1)
    for x in a:
        diagonal = 0
        for j, y in enumerate(b, 1):
            above = row[j]
            row[j] = diagonal + 1 if x == y else max(row[j], row[j - 1])
            diagonal = above
    return row[-1]


def rouge_l(a: list[str], b: list[str]) -> float:
    """ROUGE-L F1 of two word sequences (1.0 for two empty ones)."""
    if not a or not b:
        return float(a == b)
    return 2 * lcs_length(a, b) / (len(a) + len(b))


class NearDuplicateIndex:
    """Known instructions by key; ``closest(text)`` finds the most similar one at or above
    ``threshold``."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._entries: list[tuple[str, list[str], Counter[str]]] = []
        self._exact: dict[tuple[str, ...], str] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, key: str, text: str) -> None:
        tokens = words(text)
        self._entries.append((key, tokens, Counter(tokens)))
        self._exact.setdefault(tuple(tokens), key)

    def closest(self, text: str) -> tuple[str, float] | None:
        """``(key, similarity)`` of the most similar known instruction when it reaches the
        threshold (1.0: the same words), else None."""
        tokens = words(text)
        if tuple(tokens) in self._exact:
            return self._exact[tuple(tokens)], 1.0
        counts = Counter(tokens)
        best: tuple[str, float] | None = None
        for key, other, other_counts in self._entries:
            total = len(tokens) + len(other)
            if total == 0 or 2 * sum((counts & other_counts).values()) / total < self.threshold:
                continue
            score = rouge_l(tokens, other)
            if score >= self.threshold and (best is None or score > best[1]):
                best = (key, score)
        return best
