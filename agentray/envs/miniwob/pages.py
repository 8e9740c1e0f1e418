"""A page's elements as text."""

from __future__ import annotations

from typing import Any


def _elements(observation: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "ref": int(e["ref"]),
            "parent": int(e["parent"]),
            "tag": str(e["tag"]),
            "text": str(e["text"]),
            "value": str(e["value"]),
            "id": str(e["id"]),
        }
        for e in observation["dom_elements"]
    ]


def page_text(elements: list[dict[str, Any]]) -> str:
    depth: dict[int, int] = {0: -1}
    lines = []
    for e in elements:
        depth[e["ref"]] = depth.get(e["parent"], -1) + 1
        tag = "text" if e["tag"] == "t" else e["tag"]
        line = f"{'  ' * depth[e['ref']]}[{e['ref']}] {tag}"
        if e["text"]:
            line += f' "{e["text"]}"'
        if e["id"]:
            line += f" id={e['id']}"
        if e["value"]:
            line += f' value="{e["value"]}"'
        lines.append(line)
    return "\n".join(lines)


def observation_text(utterance: str, elements: list[dict[str, Any]]) -> str:
    return f"Task: {utterance}\nPage:\n{page_text(elements)}"
