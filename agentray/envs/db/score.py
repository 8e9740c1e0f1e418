"""Parsing the agent's reply and its final answer; comparing answers."""

from __future__ import annotations

import ast
import math
import re
from typing import Any


def parse_action(text: str) -> tuple[str, str] | None:
    """``("operation", sql)`` or ``("answer", raw answer)``; None when the reply matches neither.

    AgentBench's rules: an ``Action: Operation`` needs a ```sql block (newlines joined into one
    line); anything else must carry ``Final Answer:``.
    """
    action = re.search(r"Action:\s*(\w+)", text)
    if action and action.group(1) == "Operation":
        sql = re.search(r"```sql\s*\n([\s\S]*?)\n?```", text)
        if not sql or not sql.group(1).strip():
            return None
        return "operation", sql.group(1).strip().replace("\n", " ")
    answer = re.search(r"Final Answer:(.*)", text)
    if not answer:
        return None
    return "answer", answer.group(1).strip()


def parse_answer(raw: str) -> list[Any]:
    """``'["a", 3]'`` -> ``["a", 3]``; rows of tuples are flattened; anything else is one item."""
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return [raw]
    if not isinstance(value, list | tuple | set):
        return [value]
    items: list[Any] = []
    for item in value:
        items.extend(item if isinstance(item, list | tuple) else [item])
    return items


def _split_numbers(items: list[Any]) -> tuple[list[float], set[str]]:
    numbers: list[float] = []
    strings: set[str] = set()
    for item in items:
        text = str(item).strip().strip("'\"").strip()
        if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", text):
            text = text.replace(",", "")
        try:
            number = float(text)
        except ValueError:
            strings.add(text)
            continue
        if math.isfinite(number):
            numbers.append(number)
        else:
            strings.add(text)
    return sorted(set(numbers)), strings


def answers_match(given: list[Any], expected: list[Any]) -> bool:
    """Equal as sets: strings exactly (quotes and spaces stripped), numbers within 0.01."""
    given_numbers, given_strings = _split_numbers(given)
    expected_numbers, expected_strings = _split_numbers(expected)
    if given_strings != expected_strings or len(given_numbers) != len(expected_numbers):
        return False
    return all(
        math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-2)
        for a, b in zip(given_numbers, expected_numbers, strict=True)
    )
