"""General suites by name: a new benchmark is one module plus one line here."""

from __future__ import annotations

from typing import Any

from agentray.registry import Registry

SUITES: dict[str, str] = {
    "mmlu": "agentray.eval.general.mmlu:MMLU",
    "humaneval": "agentray.eval.general.humaneval:HumanEval",
    "gsm_symbolic": "agentray.eval.general.gsm:GSMSymbolic",
    "mt_bench": "agentray.eval.general.mtbench:MTBench",
}


# Suite is not imported here (base.py -> config.py -> this module would be a circle)
SUITE_REGISTRY: Registry[Any] = Registry("general suite", SUITES)


def suite_names() -> list[str]:
    return SUITE_REGISTRY.names()


def suite_class(name: str) -> type:
    return SUITE_REGISTRY.get(name)
