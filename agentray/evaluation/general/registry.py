"""General suites by name: a new benchmark is one module plus one line here."""

from __future__ import annotations

import importlib

from agentray.evaluation.general.base import Suite

SUITES: dict[str, str] = {
    "mmlu": "agentray.evaluation.general.mmlu:MMLU",
    "humaneval": "agentray.evaluation.general.humaneval:HumanEval",
    "gsm_symbolic": "agentray.evaluation.general.gsm:GSMSymbolic",
    "mt_bench": "agentray.evaluation.general.mtbench:MTBench",
}


def suite_names() -> list[str]:
    return list(SUITES)


def suite_class(name: str) -> type[Suite]:
    if name not in SUITES:
        raise KeyError(f"unknown general suite {name!r}; known: {', '.join(SUITES)}")
    module, cls = SUITES[name].split(":")
    return getattr(importlib.import_module(module), cls)
