"""Runs the configured general suites against the model under evaluation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from agentray import storage
from agentray.eval.general.base import REQUEST_ERROR, Ask, Suite, SuiteSkipped, run_suite
from agentray.eval.general.config import GeneralConfig
from agentray.eval.general.registry import suite_class
from agentray.failures import ErrorLog
from agentray.policies.base import Policy
from agentray.policies.registry import PolicyConfig, make_policy
from agentray.types import Completion, GenerationParams, Message


def make_suite(name: str, cfg: GeneralConfig) -> Suite:
    return suite_class(name)(cfg.suite_config(name), cfg)


def asker(policy: Policy) -> Ask:
    async def ask(messages: list[Message], params: GenerationParams) -> Completion:
        return (await policy.generate([messages], params))[0]

    return ask


def ready_suites(
    cfg: GeneralConfig, policy_cfg: PolicyConfig
) -> tuple[list[Suite], dict[str, str]]:
    """The suites that can run, and the reason for each one that cannot."""
    suites, skipped = [], {}
    for name in cfg.suites:
        suite = make_suite(name, cfg)
        try:
            if policy_cfg.backend == "expert":
                raise SuiteSkipped(
                    "the expert policy only plays env tasks; general suites need a language "
                    "model (eval.policy.backend openai, hf or vllm)"
                )
            suite.check_ready()
        except SuiteSkipped as e:
            skipped[name] = str(e)
            continue
        suites.append(suite)
    return suites, skipped


def run_general(
    cfg: GeneralConfig,
    policy_cfg: PolicyConfig,
    out_dir: str,
    fresh: bool = True,
    progress: bool = True,
    errors: ErrorLog | None = None,
) -> dict[str, Any]:
    """{"tasks": summary per suite, "skipped": reason per suite, "results": item results per
    suite, "policy_stats", "timings_s"}; item results also go to ``out_dir/<suite>.jsonl``
    (``out_dir``: a path or URI). Each request_error item goes to ``errors`` as it ends."""
    out_dir = storage.absolute(out_dir)
    if fresh:
        storage.remove(out_dir)  # results of an earlier model
    suites, skipped = ready_suites(cfg, policy_cfg)
    out: dict[str, Any] = {"tasks": {}, "skipped": skipped, "results": {}, "timings_s": {}}
    if suites:
        report = _error_reporter(errors)
        asyncio.run(_run(suites, cfg, policy_cfg, out_dir, fresh, progress, out, report))
    return out


async def _run(
    suites: list[Suite],
    cfg: GeneralConfig,
    policy_cfg: PolicyConfig,
    out_dir: str,
    fresh: bool,
    progress: bool,
    out: dict[str, Any],
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    policy = make_policy(policy_cfg)
    judge = make_policy(cfg.mt_bench.judge) if cfg.mt_bench.judge is not None else None
    try:
        for suite in suites:
            if suite.name == "mt_bench" and judge is not None:
                suite.judge = asker(judge)  # type: ignore[attr-defined]
            started = time.perf_counter()
            rows = await run_suite(
                suite,
                asker(policy),
                storage.join(out_dir, f"{suite.name}.jsonl"),
                cfg.max_concurrency,
                fresh=fresh,
                progress=progress,
                on_result=on_result,
            )
            out["timings_s"][suite.name] = round(time.perf_counter() - started, 2)
            out["results"][suite.name] = rows
            out["tasks"][suite.name] = suite.summarize(rows)
    finally:
        out["policy_stats"] = _stats(policy)
        if judge is not None:
            out["judge_stats"] = _stats(judge)
            await judge.aclose()
        await policy.aclose()


def _error_reporter(errors: ErrorLog | None) -> Callable[[dict[str, Any]], None] | None:
    if errors is None:
        return None

    def report(result: dict[str, Any]) -> None:
        if result.get("status") == REQUEST_ERROR:
            errors.add(f"request_error {result['id']}", result.get("error"))

    return report


def _stats(policy: Policy) -> dict[str, Any]:
    stats = getattr(policy, "stats", None)
    return stats() if callable(stats) else {}
