"""Answer F1."""

from __future__ import annotations


def f1_score(predicted: set[str], gold: set[str]) -> float:
    """AgentBench's F1: 0 without a true positive."""
    tp = len(predicted & gold)
    if tp == 0:
        return 0.0
    precision, recall = tp / len(predicted), tp / len(gold)
    return 2 * precision * recall / (precision + recall)
