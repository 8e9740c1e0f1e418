"""The hybrid mix: which agent and general examples, how often, for a ratio eta.

eta = agent / (agent + general), counted in examples or in tokens. Two ways to reach it:
  - ``downsample_general`` (the paper's way): every agent example once, general examples
    drawn (seeded) until the general share is (1 - eta);
  - ``upsample_agent``: the whole general pool (up to ``max_general_records``), agent
    examples repeated (each as evenly as possible) until the agent share is eta.
Planning works on (id, tokens) pairs only, so it runs on the driver; the rows stay in Ray Data.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

MixBy = Literal["examples", "tokens"]
Balance = Literal["downsample_general", "upsample_agent"]


def general_records_for(agent_records: int, eta: float, available: int, cap: int | None) -> int:
    """General records so that agent / (agent + general) = eta, as far as the pool allows.

    eta = 0.2 (the paper's choice) puts four general records beside every agent record.
    """
    wanted = round(agent_records * (1 - eta) / eta)
    if cap is not None:
        wanted = min(wanted, cap)
    return min(wanted, available)


def realized_eta(agent: float, general: float) -> float | None:
    total = agent + general
    return agent / total if total else None


@dataclass
class MixPlan:
    """Copies of each agent example (0 = left out) and the chosen general ids."""

    agent_copies: dict[str, int]
    general_ids: list[str]
    agent_tokens: int = 0
    general_tokens: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def agent_examples(self) -> int:
        return sum(self.agent_copies.values())

    @property
    def eta_examples(self) -> float | None:
        return realized_eta(self.agent_examples, len(self.general_ids))

    @property
    def eta_tokens(self) -> float | None:
        return realized_eta(self.agent_tokens, self.general_tokens)


def plan_mix(
    agent: list[tuple[str, int]],
    general: list[tuple[str, int]],
    eta: float,
    by: MixBy = "examples",
    balance: Balance = "downsample_general",
    max_general: int | None = None,
    seed: int = 0,
) -> MixPlan:
    """``agent``/``general``: (id, tokens); ``general`` is already in its seeded draw order.

    The realized ratio is within one example of ``eta`` (the last example taken may
    overshoot by its own size) unless a pool runs out, which ``notes`` then says.
    """
    general = general[:max_general] if max_general is not None else general
    if eta >= 1:
        chosen, notes = [], []
        copies = {record_id: 1 for record_id, _ in agent}
    elif balance == "downsample_general":
        chosen, notes = _take_general(agent, general, eta, by)
        copies = {record_id: 1 for record_id, _ in agent}
    else:
        chosen, notes = list(general), []
        copies = _repeat_agent(agent, _size(chosen, by) * eta / (1 - eta), by, seed)
    tokens = dict(agent)
    return MixPlan(
        agent_copies=copies,
        general_ids=[record_id for record_id, _ in chosen],
        agent_tokens=sum(tokens[i] * n for i, n in copies.items()),
        general_tokens=sum(n for _, n in chosen),
        notes=notes,
    )


def _size(rows: list[tuple[str, int]], by: MixBy) -> int:
    return len(rows) if by == "examples" else sum(n for _, n in rows)


def _take_general(agent, general, eta: float, by: MixBy):
    target = _size(agent, by) * (1 - eta) / eta
    chosen: list[tuple[str, int]] = []
    total = 0
    for row in general:
        # Stop at the count/token total closest to the target (within one example).
        step = 1 if by == "examples" else row[1]
        if total >= target or abs(total + step - target) > abs(total - target):
            break
        chosen.append(row)
        total += step
    notes = []
    if total < target and len(chosen) == len(general):
        notes.append(f"general pool ran out: {total} of {round(target)} {by} wanted for eta={eta}")
    return chosen, notes


def _repeat_agent(agent, target: float, by: MixBy, seed: int) -> dict[str, int]:
    """Cycle through a seeded order of the agent examples until ``target`` is reached, so
    copies differ by at most one between examples."""
    order = list(agent)
    random.Random(seed).shuffle(order)
    copies = {record_id: 0 for record_id, _ in agent}
    total, k = 0, 0
    while order and total < target:
        record_id, tokens = order[k % len(order)]
        step = 1 if by == "examples" else tokens
        if abs(total + step - target) > abs(total - target):
            break
        copies[record_id] += 1
        total += step
        k += 1
    return copies
