"""How many general records a mix at ratio eta needs."""

from __future__ import annotations


def general_records_for(agent_records: int, eta: float, available: int, cap: int | None) -> int:
    """General records so that agent / (agent + general) = eta, as far as the pool allows.

    eta = 0.2 (the paper's choice) puts four general records beside every agent record.
    """
    wanted = round(agent_records * (1 - eta) / eta)
    if cap is not None:
        wanted = min(wanted, cap)
    return min(wanted, available)


def realized_eta(agent_records: int, general_records: int) -> float | None:
    total = agent_records + general_records
    return agent_records / total if total else None
