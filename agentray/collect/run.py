"""The collect stage: env families x teacher policy -> trajectory parquet."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agentray import storage
from agentray.collect.config import CollectConfig
from agentray.collect.engine import RolloutEngine, load_tasks
from agentray.collect.sink import ParquetSink
from agentray.envs.config import EnvsConfig, as_envs, played_envs
from agentray.manifest import write_manifest
from agentray.ray_utils import ensure_ray


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
    ``<run_dir>/collect/manifest.json`` under ``counts``."""
    started = time.time()
    out = trajectories_dir(cfg, run_dir)
    # what is there already is read first: an unreadable shard fails before Ray starts
    sink = ParquetSink(
        out,
        flush_every=cfg.rollout.flush_every,
        flush_interval_s=cfg.rollout.flush_interval_s,
        max_attempts=cfg.rollout.attempts_allowed,
    )
    ensure_ray()
    envs = as_envs(envs)
    tasks = load_tasks(cfg.families, cfg.split, envs, cfg.max_tasks_per_family)
    engine = RolloutEngine(cfg.rollout, cfg.policy, envs)
    try:
        summary = asyncio.run(engine.run(tasks, sink, progress=progress))
    finally:
        engine.shutdown()
    summary["tasks"] = len(tasks)
    summary["written_total"] = len(sink.written)
    write_manifest(
        storage.join(storage.absolute(run_dir), "collect"),
        "collect",
        cfg,
        inputs={"tasks": len(tasks), "envs": played_envs(envs, cfg.families)},
        counts=summary,
        outputs={"trajectories": out},
        started_at=started,
    )
    return summary
