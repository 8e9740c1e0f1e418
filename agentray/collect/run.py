"""The collect stage: env families x teacher policy -> trajectory parquet."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agentray import storage
from agentray.collect.checks import (
    WatchedSink,
    check_expert_plays,
    preflight_policy,
    task_errors,
)
from agentray.collect.config import CollectConfig
from agentray.collect.engine import RolloutEngine, load_tasks
from agentray.collect.sink import ParquetSink
from agentray.envs.config import EnvsConfig, as_envs, played_envs
from agentray.failures import ErrorLog, StageFailed, common_error_text, error_failure
from agentray.manifest import write_manifest
from agentray.ray_utils import ensure_ray
from agentray.types import TaskSpec


def trajectories_dir(cfg: CollectConfig, run_dir: str) -> str:
    """The trajectory folder: ``cfg.output`` or ``<run_dir>/collect/trajectories`` (a path
    or URI)."""
    if cfg.output:
        return storage.absolute(cfg.output)
    return storage.join(storage.absolute(run_dir), "collect", "trajectories")


def run_collect(
    cfg: CollectConfig,
    run_dir: str,
    progress: bool = True,
    envs: EnvsConfig | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Collect every task of ``cfg`` not yet in the output folder (and, with
    ``rollout.retry_errors``, again those recorded as task_error, up to
    ``rollout.max_attempts``), with the families' settings ``envs`` (the pipeline config's
    ``envs:``; defaults where None); returns the run summary
    (per family: count, success rate, mean reward/turns, statuses, tokens; plus policy
    stats, retries, actor replacements and the node of each EnvPool), also written to
    ``<run_dir>/collect/manifest.json`` under ``counts``.

    Raises ``EndpointUnavailable`` before any work if the policy's endpoint does not answer,
    ``PolicyCannotPlay`` if the expert cannot play a family, and ``StageFailed`` (with the
    summary; outputs and manifest written, status failed) when more than
    ``cfg.max_error_fraction`` of the episodes end in task_error."""
    started = time.time()
    preflight_policy(cfg.policy)  # a dead endpoint fails here, in seconds
    out = trajectories_dir(cfg, run_dir)
    envs = as_envs(envs)
    tasks = load_tasks(cfg.families, cfg.split, envs, cfg.max_tasks_per_family)
    check_expert_plays(cfg.policy, tasks, envs)
    # what is there already is read next: an unreadable shard fails before Ray starts
    sink = ParquetSink(
        out,
        flush_every=cfg.rollout.flush_every,
        flush_interval_s=cfg.rollout.flush_interval_s,
        max_attempts=cfg.rollout.attempts_allowed,
    )
    errors = ErrorLog("collect")
    summary = _run_episodes(cfg, envs, tasks, sink, errors, progress)
    failure = error_failure(
        task_errors(summary), summary["episodes"], cfg.max_error_fraction, errors
    )
    write_manifest(
        storage.join(storage.absolute(run_dir), "collect"),
        "collect",
        cfg,
        inputs={"tasks": len(tasks), "envs": played_envs(envs, cfg.families)},
        counts=summary,
        outputs={"trajectories": out},
        started_at=started,
        failure=failure,
    )
    if failure is not None:
        raise StageFailed(
            f"collect FAILED: {failure['errors']} of {failure['total']} episodes ended in "
            f"task_error (more than max_error_fraction {cfg.max_error_fraction})"
            f"{common_error_text(failure)}; outputs and manifest in {out}",
            summary,
        )
    return summary


def _run_episodes(
    cfg: CollectConfig,
    envs: EnvsConfig,
    tasks: list[TaskSpec],
    sink: ParquetSink,
    errors: ErrorLog,
    progress: bool,
) -> dict[str, Any]:
    ensure_ray()
    engine = RolloutEngine(cfg.rollout, cfg.policy, envs, lineage=cfg.policy_lineage)
    try:
        summary = asyncio.run(engine.run(tasks, WatchedSink(sink, errors), progress=progress))
    finally:
        engine.shutdown()
        errors.close()
    summary["tasks"] = len(tasks)
    summary["written_total"] = len(sink.written)
    return summary
