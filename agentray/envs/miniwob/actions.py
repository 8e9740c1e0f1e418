"""The action grammar: ``click(<ref>)`` and ``type(<ref>, "<text>")``."""

from __future__ import annotations

import re

_ACTION_LINE = re.compile(r"^[ \t]*action[ \t]*:(.*)$", re.IGNORECASE | re.MULTILINE)


_CLICK = re.compile(r"click\(\s*(-?\d+)\s*\)", re.IGNORECASE)


_TYPE = re.compile(r'type\(\s*(-?\d+)\s*,\s*"(.*)"\s*\)', re.IGNORECASE)


def parse_action(reply: str) -> tuple[str, int, str | None] | None:
    """``("click", ref, None)`` or ``("type", ref, text)`` from the first ``Action:`` line."""
    match = _ACTION_LINE.search(reply)
    if match is None:
        return None
    command = match.group(1).strip()
    if m := _CLICK.fullmatch(command):
        return "click", int(m.group(1)), None
    if m := _TYPE.fullmatch(command):
        return "type", int(m.group(1)), m.group(2)
    return None


def format_action(kind: str, ref: int, text: str | None = None) -> str:
    return f"Action: click({ref})" if kind == "click" else f'Action: type({ref}, "{text}")'
