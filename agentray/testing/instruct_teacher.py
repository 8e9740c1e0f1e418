"""A stand-in teacher for ``agentray instruct``, served by the expert endpoint over real HTTP.

It answers instruct prompts (recognised by their header line) the way a teacher would: one
```json block per asked-for proposal. Good proposals come from the families' procedural
generators with fresh seeds (for a task-derivation prompt: a new question over the given
table); faults, given by name, replace the first proposals it writes for a family, one each,
so every rejection path is exercised. ``log`` keeps every proposal it sent with its fault
(None for a good one): the ground truth a test compares the verdicts with.
"""

from __future__ import annotations

import json
import random
import re
from typing import Any

from agentray.envs.db import proposals as db_proposals
from agentray.envs.db.config import MODIFYING
from agentray.envs.db.domains import DOMAINS
from agentray.envs.db.tasks import TEMPLATES, Ctx, _gold
from agentray.envs.db.tasks import make_payload as db_payload
from agentray.envs.generate import Redraw
from agentray.envs.os import proposals as os_proposals
from agentray.envs.os.tasks import make_payload as os_payload
from agentray.envs.proposals import (
    CHECK_FAILED,
    CHECK_PASSES_WITHOUT_SOLUTION,
    DUPLICATE,
    MALFORMED_JSON,
    MISSING_FIELD,
    NEAR_DUPLICATE,
    SOLUTION_ERROR,
)
from agentray.instruct.prompts import DERIVE, parse_header
from agentray.types import Message, TaskSpec

# fault -> the rejection reason it must get
FAULT_REASONS: dict[str, str] = {
    "malformed_json": MALFORMED_JSON,
    "missing_field": MISSING_FIELD,
    "wrong_check": CHECK_FAILED,
    "sql_error": SOLUTION_ERROR,  # db only
    "solution_error": SOLUTION_ERROR,  # os only
    "check_passes_without_solution": CHECK_PASSES_WITHOUT_SOLUTION,
    "duplicate_of_seed": DUPLICATE,
    "near_duplicate_of_seed": NEAR_DUPLICATE,
}
FAMILY_FAULTS: dict[str, tuple[str, ...]] = {
    "db": tuple(f for f in FAULT_REASONS if f != "solution_error"),
    "os": tuple(f for f in FAULT_REASONS if f != "sql_error"),
}
NOT_THE_ANSWER = "certainly not the answer"
_PROMPT_BLOCK = re.compile(r"```json\n(.*?)\n```", re.DOTALL)


class StandInTeacher:
    def __init__(self, faults: list[str] | None = None, seed: int = 0) -> None:
        unknown = [f for f in faults or [] if f not in FAULT_REASONS]
        if unknown:
            raise ValueError(f"unknown instruct faults {unknown}; known: {list(FAULT_REASONS)}")
        # one stream per family: a family's proposals do not depend on the other's requests
        self.rngs = {family: random.Random(f"{seed}:{family}") for family in FAMILY_FAULTS}
        self.pending = {
            family: [f for f in faults or [] if f in kinds]
            for family, kinds in FAMILY_FAULTS.items()
        }
        self.log: list[dict[str, Any]] = []

    @staticmethod
    def answers(messages: list[Message]) -> bool:
        return bool(messages) and parse_header(messages[-1]["content"]) is not None

    def reply(self, messages: list[Message]) -> str:
        text = messages[-1]["content"]
        header = parse_header(text)
        assert header is not None
        family, mode, n = header
        if family not in FAMILY_FAULTS:
            raise KeyError(f"the stand-in teacher writes no {family!r} tasks")
        shown = [json.loads(block) for block in _PROMPT_BLOCK.findall(text)]
        source = shown.pop() if mode == DERIVE else None
        blocks = []
        for _ in range(n):
            fault = self.pending[family].pop(0) if self.pending[family] else None
            raw = self._write(family, shown, source, fault)
            self.log.append({"family": family, "mode": mode, "fault": fault, "raw": raw})
            blocks.append(f"```json\n{raw}\n```")
        return "Here are the new tasks.\n\n" + "\n\n".join(blocks)

    def _write(self, family: str, seeds: list[dict], source: dict | None, fault: str | None) -> str:
        if fault == "duplicate_of_seed":
            return json.dumps(_without(seeds[0], source))
        if fault == "near_duplicate_of_seed":
            copy = _without(seeds[0], source)
            key = "question" if family == "db" else "description"
            copy[key] = "Please tell me: " + copy[key]
            return json.dumps(copy)
        proposal = self._good(family, source, fault)
        if fault is not None:
            _FAULTS[fault](proposal)
        text = json.dumps(_without(proposal, source))
        return text[: len(text) // 2] if fault == "malformed_json" else text

    def _good(self, family: str, source: dict | None, fault: str | None) -> dict[str, Any]:
        """A valid proposal of the kind ``fault`` needs (SELECT for an SQL error, a change for
        a check that must not pass beforehand)."""
        for _ in range(1000):
            rng = random.Random(self.rngs[family].getrandbits(48))
            try:
                proposal = _draft(family, rng, source)
            except Redraw:
                continue
            if _fits(family, proposal, fault):
                return proposal
        raise RuntimeError(f"no {family} draft fits the fault {fault}")


def _fits(family: str, proposal: dict[str, Any], fault: str | None) -> bool:
    if fault == "sql_error":
        return proposal["type"] == "SELECT"
    if fault == "check_passes_without_solution" and family == "db":
        return proposal["type"] in MODIFYING
    return True


def _draft(family: str, rng: random.Random, source: dict | None) -> dict[str, Any]:
    if family == "os":
        payload = os_payload(rng)
    elif source is not None:
        payload = _db_payload_over(source, rng)
    else:
        payload = db_payload(rng)
    module = db_proposals if family == "db" else os_proposals
    return module.proposal_from_task(
        TaskSpec(id="draft", family=family, split="train", seed=0, payload=payload)
    )


def _db_payload_over(source: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A procedural question over the given table (task derivation)."""
    names = tuple(name for name, _ in source["columns"])
    domain = next((d for d in DOMAINS if d.columns == names), None)
    if domain is None:
        raise RuntimeError(f"no DB domain has the columns {names}")
    ctx = Ctx(rng, domain, source["table"], source["rows"])
    draft = rng.choice(TEMPLATES)(ctx)
    payload = {
        **source,
        "question": draft.question,
        "sql": draft.sql,
        "type": draft.type,
        "category": draft.category,
        "thought": draft.thought,
    }
    return {**payload, **_gold(payload)}


def _without(proposal: dict[str, Any], source: dict | None) -> dict[str, Any]:
    """A derived proposal leaves out the fields of the environment it is derived over."""
    return {k: v for k, v in proposal.items() if source is None or k not in source}


def _missing_field(p: dict[str, Any]) -> None:
    del p["solution"]


def _wrong_check(p: dict[str, Any]) -> None:
    check = p["check"]
    if "answer" in check:  # db SELECT or os question
        check["answer"] = [NOT_THE_ANSWER] if isinstance(check["answer"], list) else NOT_THE_ANSWER
    elif "expected" in check:  # db change
        check["expected"] = [NOT_THE_ANSWER]
    else:  # os change
        check["script"] = "[ -e /root/.certainly-not-there ]"


def _sql_error(p: dict[str, Any]) -> None:
    p["solution"] = f"SELECT no_such_column FROM `{p['table']}`;"


def _solution_error(p: dict[str, Any]) -> None:
    p["solution"] = "cat /root/.certainly-not-there"


def _check_passes_without_solution(p: dict[str, Any]) -> None:
    p["check"] = {"sql": "SELECT 1;", "expected": [1]} if "table" in p else {"script": "true"}


_FAULTS = {
    "malformed_json": lambda p: None,  # cut short when written out
    "missing_field": _missing_field,
    "wrong_check": _wrong_check,
    "sql_error": _sql_error,
    "solution_error": _solution_error,
    "check_passes_without_solution": _check_passes_without_solution,
}
