"""The teacher's prompts (self-instruct and task derivation) and the parsing of its replies.

Every prompt is one user turn that opens with a machine-readable header line
(``[agentray instruct] family=db mode=self_instruct proposals=3``), then the family's guide
(what its tasks are and the JSON fields of a proposal), the seed examples as ```json blocks,
and the request. The teacher answers with one ```json block per new task, so one broken
block costs one proposal, not the whole reply.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from agentray.envs.proposals import MALFORMED_JSON, MALFORMED_REPLY, Rejected
from agentray.types import Message

HEADER = "[agentray instruct]"
SELF_INSTRUCT = "self_instruct"
DERIVE = "derive"
_HEADER_LINE = re.compile(
    re.escape(HEADER) + r" family=(\w+) mode=(\w+) proposals=(\d+)", re.MULTILINE
)
_JSON_BLOCK = re.compile(r"```json[^\n]*\n(.*?)\n?(?:```|\Z)", re.DOTALL)


def header(family: str, mode: str, n: int) -> str:
    return f"{HEADER} family={family} mode={mode} proposals={n}"


def parse_header(text: str) -> tuple[str, str, int] | None:
    """``(family, mode, n)`` of an instruct prompt, None for any other text."""
    match = _HEADER_LINE.search(text)
    return (match.group(1), match.group(2), int(match.group(3))) if match else None


def json_block(value: Any) -> str:
    return "```json\n" + json.dumps(value, ensure_ascii=False) + "\n```"


def _examples(seeds: list[dict[str, Any]]) -> str:
    return "\n\n".join(f"Example {i}:\n{json_block(seed)}" for i, seed in enumerate(seeds, 1))


def self_instruct_messages(
    family: str, guide: str, seeds: list[dict[str, Any]], n: int
) -> list[Message]:
    """Self-Instruct: k seed tasks shown, n new and different ones asked for."""
    text = f"""{header(family, SELF_INSTRUCT, n)}

You write new tasks for training LLM agents. {guide}

Here are {len(seeds)} example tasks:

{_examples(seeds)}

Write {n} new tasks. Each must differ from the examples and from each other (another \
subject, another kind of question or change, not the same question with other values). \
Every task is verified by running its solution and its check; a task that fails, or that \
repeats an example, is discarded. Answer with exactly {n} ```json blocks, one task per \
block, and nothing else."""
    return [{"role": "user", "content": text}]


def derive_messages(
    family: str,
    guide: str,
    source: dict[str, Any],
    seeds: list[dict[str, Any]],
    n: int,
) -> list[Message]:
    """Task derivation: n new tasks over the environment of one seed (``source`` holds the
    fields that describe it, e.g. a table); the teacher writes only the remaining fields."""
    fields = ", ".join(f'"{name}"' for name in source)
    text = f"""{header(family, DERIVE, n)}

You write new tasks for training LLM agents. {guide}

Here are {len(seeds)} example tasks:

{_examples(seeds)}

All the new tasks are about this one environment (the fields {fields}):

{json_block(source)}

Write {n} new tasks about it, each different from the examples and from each other (other \
columns, conditions, aggregates or changes). Leave out the fields {fields}: they are the \
ones above. Every task is verified by running its solution and its check; a task that \
fails, or that repeats an example, is discarded. Answer with exactly {n} ```json blocks, one \
task per block, and nothing else."""
    return [{"role": "user", "content": text}]


@dataclass
class Block:
    """One proposal as the teacher wrote it: its text and the parsed value, or the reason
    it does not parse."""

    raw: str
    value: Any = None
    error: Rejected | None = None


def parse_reply(text: str) -> list[Block]:
    """The proposals of a reply: one per ```json block (a block holding an array gives one
    per item); without blocks, the reply itself as JSON; a reply with neither is one
    malformed proposal."""
    raws = _JSON_BLOCK.findall(text)
    if raws:
        blocks = [block for raw in raws for block in _parse_block(raw)]
    else:
        try:
            blocks = _items(text, json.loads(text))
        except ValueError:
            blocks = []
    return blocks or [Block(text, error=Rejected(MALFORMED_REPLY, "no proposal in the reply"))]


def _parse_block(raw: str) -> list[Block]:
    try:
        value = json.loads(raw)
    except ValueError as e:
        return [Block(raw, error=Rejected(MALFORMED_JSON, str(e)))]
    return _items(raw, value)


def _items(raw: str, value: Any) -> list[Block]:
    if isinstance(value, list):
        return [Block(json.dumps(item, ensure_ascii=False), item) for item in value]
    return [Block(raw, value)]
