"""AgentBench's ALFWorld parsing: the ``ACTION:`` line, snapping to admissible commands."""

from __future__ import annotations

import math
import re
from collections import Counter


def parse_action(text: str) -> str | None:
    """AgentBench's ``process_action``: the first ``ACTION:`` line, stripped and lower-cased.

    None when there is no ``ACTION:`` or it is empty (AgentBench: AGENT_INVALID_ACTION).
    """
    match = re.search("ACTION:(.*)", text)
    if match is None:
        return None
    return match.group(1).strip().lower().split("\n")[0] or None


def process_ob(observation: str) -> str:
    """AgentBench cuts the ``You arrive at loc N. `` prefix of an arrival."""
    if observation.startswith("You arrive at loc "):
        return observation[observation.find(". ") + 2 :]
    return observation


def sentence_bleu(reference: str, candidate: str) -> float:
    """NLTK's ``sentence_bleu`` (4-gram, uniform weights) with ``SmoothingFunction().method4``."""
    ref, hyp = reference.split(), candidate.split()
    numerators, denominators = [], []
    for n in range(1, 5):
        hyp_grams = Counter(tuple(hyp[i : i + n]) for i in range(len(hyp) - n + 1))
        ref_grams = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
        numerators.append(sum(min(c, ref_grams[g]) for g, c in hyp_grams.items()))
        denominators.append(max(1, sum(hyp_grams.values())))
    if numerators[0] == 0:
        return 0.0
    precisions = [a / b for a, b in zip(numerators, denominators, strict=True)]
    increment = 1
    for i, numerator in enumerate(numerators):
        if numerator == 0 and len(hyp) > 1:  # method4, k = 5
            precisions[i] = 1 / (2**increment * 5 / math.log(len(hyp))) / denominators[i]
            increment += 1
    brevity = 1.0 if len(hyp) > len(ref) else math.exp(1 - len(ref) / len(hyp))
    return brevity * math.exp(math.fsum(0.25 * math.log(p) for p in precisions if p > 0))


def snap_to_admissible(action: str, choices: list[str], limit: float = 0.01) -> str:
    """AgentBench's matching: the choice itself, else the highest-BLEU choice above ``limit``."""
    if not choices or action in choices:
        return action
    scores = [sentence_bleu(choice, action) for choice in choices]
    best = max(range(len(choices)), key=scores.__getitem__)  # the first best, like argmax
    return choices[best] if scores[best] > limit else action


def available_actions(commands: list[str]) -> str:
    return " AVAILABLE ACTIONS: " + "\n".join(commands) + "\n"
