"""The eval stage: held-in and held-out env families through the rollout engine, then the
general suites, all against the model under evaluation (a served model, in practice), then
scores with the paper's Overall per category and the report."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agentray import storage
from agentray.envs.config import EnvsConfig, as_envs, played_envs
from agentray.eval.config import EvalConfig
from agentray.eval.general.runner import run_general
from agentray.eval.overall import load_reference
from agentray.eval.report import build_scores, env_task_scores, write_report
from agentray.manifest import write_manifest
from agentray.records import Trajectory


def run_eval(
    cfg: EvalConfig,
    run_dir: str,
    progress: bool = True,
    fresh: bool = True,
    envs: EnvsConfig | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate ``cfg.policy`` on tasks made with the families' settings ``envs`` (the
    pipeline config's ``envs:``); returns the scores dict (also in
    ``<run_dir>/eval/scores.json``). ``run_dir``: an absolute path or a URI
    (``s3://bucket/run``); every output goes through ``agentray.storage``.

    ``fresh`` discards earlier eval results of this run dir (a new model is being scored);
    pass False to resume an interrupted evaluation of the same model: finished episodes
    are kept, and those that ended in task_error are run again as the collect stage does
    (``rollout.retry_errors``, ``rollout.max_attempts``).
    """
    started = time.time()
    reference = load_reference(cfg.reference_file)  # a bad file fails before any work
    out_dir = storage.join(storage.absolute(run_dir), "eval")
    env_rows, n_tasks = _run_env_families(
        cfg, as_envs(envs), storage.join(out_dir, "trajectories"), progress, fresh
    )
    general = run_general(
        cfg.general, cfg.policy, storage.join(out_dir, "general"), fresh, progress
    )
    task_scores = {
        "held_in": env_task_scores(env_rows, cfg.families),
        "held_out": env_task_scores(env_rows, cfg.held_out),
        "general": general["tasks"],
    }
    meta = {
        "model": getattr(cfg.policy, "model", cfg.policy.backend),
        "base_url": getattr(cfg.policy, "base_url", None),
        "split": cfg.split,
        "general_timings_s": general["timings_s"],
    }
    scores = build_scores(
        task_scores, {"general": general["skipped"]}, reference, cfg.reference_file, meta
    )
    paths = write_report(out_dir, scores, env_rows, general["results"], cfg.sample_trajectories)
    write_manifest(
        out_dir,
        "eval",
        cfg,
        inputs={
            "env_tasks": n_tasks,
            "envs": played_envs(envs, [*cfg.families, *cfg.held_out]),
            "general_items": {k: len(v) for k, v in general["results"].items()},
        },
        counts={t: s["count"] for c in task_scores.values() for t, s in c.items()},
        outputs={
            **paths,
            "overall": scores["overall"],
            "policy_stats": general.get("policy_stats", {}),
            "judge_stats": general.get("judge_stats", {}),
        },
        started_at=started,
    )
    return scores


def _run_env_families(
    cfg: EvalConfig, envs: EnvsConfig, traj_dir: str, progress: bool, fresh: bool
) -> tuple[list[Trajectory], int]:
    """Held-in and held-out episodes in one engine run (Ray starts only if there are any),
    stored by the collect stage's sink at ``traj_dir`` (a path or URI)."""
    families = [*cfg.families, *cfg.held_out]
    if fresh:
        storage.remove(traj_dir)
    if not families:
        return [], 0
    from agentray.collect import ParquetSink, RolloutEngine, load_tasks, read_trajectories
    from agentray.ray_utils import ensure_ray

    ensure_ray()
    tasks = load_tasks(families, cfg.split, envs, cfg.max_tasks_per_family)
    sink = ParquetSink(
        traj_dir, flush_every=cfg.rollout.flush_every, max_attempts=cfg.rollout.attempts_allowed
    )
    engine = RolloutEngine(cfg.rollout, cfg.policy, envs)
    try:
        asyncio.run(engine.run(tasks, sink, progress=progress))
    finally:
        engine.shutdown()
    return read_trajectories(traj_dir), len(tasks)
