"""The scripted expert per task type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _find(elements: list[dict[str, Any]], tag: str, text: str | None = None) -> list[int]:
    return [e["ref"] for e in elements if e["tag"] == tag and (text is None or e["text"] == text)]


def _only(refs: list[int], what: str) -> int:
    if len(refs) != 1:
        raise ValueError(f"expected one {what}, found {len(refs)}")
    return refs[0]


def _plan_click_button(fields, elements):
    return [("click", _only(_find(elements, "button", fields["target"]), "target button"), None)]


def _plan_click_link(fields, elements):
    return [("click", _only(_find(elements, "span", fields["target"]), "target link"), None)]


def _plan_enter_text(fields, elements):
    field = _only(_find(elements, "input_text"), "text field")
    submit = _only(_find(elements, "button", "Submit"), "Submit button")
    return [("type", field, fields["target"]), ("click", submit, None)]


def _plan_enter_password(fields, elements):
    inputs = _find(elements, "input_password")
    submit = _only(_find(elements, "button", "Submit"), "Submit button")
    return [("type", ref, fields["target"]) for ref in inputs] + [("click", submit, None)]


def _plan_click_dialog(fields, elements):
    close = [e["parent"] for e in elements if e["tag"] == "t" and e["text"] == "Close"]
    return [("click", _only(close, "dialog close button"), None)]


EXPERT_TYPES: dict[str, Callable[[dict[str, str], list[dict[str, Any]]], list]] = {
    "click-button": _plan_click_button,
    "click-link": _plan_click_link,
    "enter-text": _plan_enter_text,
    "enter-password": _plan_enter_password,
    "click-dialog": _plan_click_dialog,
}
