"""General suites by name: a new benchmark is one module plus one line here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentray.registry import Registry

if TYPE_CHECKING:
    from agentray.eval.general.base import Suite

SUITES: dict[str, str] = {
    "mmlu": "agentray.eval.general.mmlu:MMLU",
    "humaneval": "agentray.eval.general.humaneval:HumanEval",
    "gsm_symbolic": "agentray.eval.general.gsm:GSMSymbolic",
    "mt_bench": "agentray.eval.general.mtbench:MTBench",
}


SUITE_REGISTRY: Registry[Suite] = Registry("general suite", SUITES)


def suite_names() -> list[str]:
    return SUITE_REGISTRY.names()


def suite_class(name: str) -> type[Suite]:
    return SUITE_REGISTRY.get(name)
