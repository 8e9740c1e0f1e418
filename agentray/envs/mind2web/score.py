"""Parsing a reply and scoring one step (element accuracy, operation F1, success)."""

from __future__ import annotations

import re
from typing import Any

from agentray.envs.mind2web.pages import OPS

_ANSWER = re.compile(r"Answer:\s*([A-Z])(?![A-Za-z])")


_ACTION = re.compile(rf"Action:\s*({'|'.join(OPS)})")


_VALUE = re.compile(r"Value:[ \t]*(.*)$", re.MULTILINE)


def parse_reply(text: str) -> tuple[str | None, str]:
    """AgentBench's ``postprocess_action_llm``: (letter or None, ``"OP value"``)."""
    answer, action, value = _ANSWER.search(text), _ACTION.search(text), _VALUE.search(text)
    op = action.group(1) if action else ""
    val = value.group(1).strip() if value else ""
    return (answer.group(1) if answer else None), f"{op} {val}".strip()


def op_f1(pred: str, label: str) -> float:
    """Mind2Web's operation F1: token-set F1 of ``"OP value"`` strings."""
    p, g = set(pred.split()), set(label.split())
    if not p and not g:
        return 1.0
    tp = len(p & g)
    if tp == 0:
        return 0.0
    precision, recall = tp / len(p), tp / len(g)
    return 2 * precision * recall / (precision + recall)


def score_step(reply: str, step: dict[str, Any]) -> dict[str, Any]:
    """Element accuracy, operation F1 and step success of one reply.

    "A" (none of the above), a letter past the choices or no letter at all predict no
    element, which AgentBench scores as element 0 and F1 0.
    """
    letter, action = parse_reply(reply)
    index = ord(letter) - 66 if letter else -1
    if not 0 <= index < len(step["choices"]):
        element, f1 = False, 0.0
    else:
        element = index == step["answer"]
        f1 = op_f1(action, f"{step['op']} {step['value']}".strip())
    return {
        "parsed": letter is not None,
        "choice": letter,
        "gold": chr(66 + step["answer"]),
        "element_correct": element,
        "op_f1": f1,
        "success": element and f1 >= 1.0,
    }
