"""The eval stage: held-in and held-out env families through the rollout engine, then the
general suites, all against the model under evaluation (a served model, in practice), then
scores with the paper's Overall per category and the report.

Before any work the model's endpoint (and the MT-Bench judge's) must answer a preflight
check; infrastructure errors print one line each as they happen (rate-limited); a task
whose episodes or items mostly failed that way is reported as not measured, and the stage
then fails (``StageFailed``, after writing scores, report and manifest)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agentray import storage
from agentray.envs.config import EnvsConfig, as_envs, played_envs
from agentray.eval.config import EvalConfig
from agentray.eval.general.runner import run_general
from agentray.eval.overall import ReferenceScores, load_reference
from agentray.eval.report import (
    build_scores,
    env_task_scores,
    failed_summary,
    first_errors,
    set_aside_unmeasured,
    write_report,
)
from agentray.failures import ErrorLog, StageFailed, common_error_text
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

    Raises ``EndpointUnavailable`` before any work if the model's (or the judge's) endpoint
    does not answer, and ``StageFailed`` (with the scores) when a task was not measured.
    """
    started = time.time()
    reference = load_reference(cfg.reference_file)  # a bad file fails before any work
    _preflight(cfg)
    out_dir = storage.join(storage.absolute(run_dir), "eval")
    errors = ErrorLog("eval")
    try:
        env_rows, n_tasks = _run_env_families(
            cfg, as_envs(envs), storage.join(out_dir, "trajectories"), progress, fresh, errors
        )
        general = run_general(
            cfg.general, cfg.policy, storage.join(out_dir, "general"), fresh, progress, errors
        )
    finally:
        errors.close()
    scores = _scores(cfg, env_rows, general, reference)
    paths = write_report(out_dir, scores, env_rows, general["results"], cfg.sample_trajectories)
    failed = scores["status"] == "failed"
    write_manifest(
        out_dir,
        "eval",
        cfg,
        inputs={
            "env_tasks": n_tasks,
            "envs": played_envs(envs, [*cfg.families, *cfg.held_out]),
            "general_items": {k: len(v) for k, v in general["results"].items()},
        },
        counts={
            t: s["count"]
            for c in scores["categories"].values()
            for group in ("tasks", "not_measured")
            for t, s in c[group].items()
        },
        outputs={
            **paths,
            "overall": scores["overall"],
            "policy_stats": general.get("policy_stats", {}),
            "judge_stats": general.get("judge_stats", {}),
        },
        started_at=started,
        failure=_failure(scores, errors) if failed else None,
    )
    if failed:
        raise StageFailed(
            f"eval FAILED: {failed_summary(scores)}, left out of the Overall"
            f"{common_error_text(_failure(scores, errors))}; report: {paths['report']}",
            scores,
        )
    return scores


def _scores(
    cfg: EvalConfig,
    env_rows: list[Trajectory],
    general: dict[str, Any],
    reference: ReferenceScores,
) -> dict[str, Any]:
    """scores.json's content: measured tasks scored, the others set aside as not measured."""
    task_scores, not_measured = set_aside_unmeasured(
        {
            "held_in": env_task_scores(env_rows, cfg.families),
            "held_out": env_task_scores(env_rows, cfg.held_out),
            "general": general["tasks"],
        },
        first_errors(env_rows, general["results"]),
        cfg.max_error_fraction,
    )
    meta = {
        "model": getattr(cfg.policy, "model", cfg.policy.backend),
        "base_url": getattr(cfg.policy, "base_url", None),
        "split": cfg.split,
        "general_timings_s": general["timings_s"],
    }
    skipped = {"general": general["skipped"]}
    return build_scores(task_scores, skipped, reference, cfg.reference_file, meta, not_measured)


def _failure(scores: dict[str, Any], errors: ErrorLog) -> dict[str, Any]:
    common = errors.most_common()
    return {
        "not_measured": {c: v["not_measured"] for c, v in scores["categories"].items()},
        "errors": errors.total,
        "most_common_error": common[0] if common else None,
        "most_common_error_count": common[1] if common else 0,
    }


def _preflight(cfg: EvalConfig) -> None:
    """The model's endpoint, and the judge's where MT-Bench runs with one."""
    from agentray.collect import preflight_policy

    preflight_policy(cfg.policy)
    judge = cfg.general.mt_bench.judge
    if "mt_bench" in cfg.general.suites and judge is not None:
        preflight_policy(judge, role="judge")


def _run_env_families(
    cfg: EvalConfig,
    envs: EnvsConfig,
    traj_dir: str,
    progress: bool,
    fresh: bool,
    errors: ErrorLog,
) -> tuple[list[Trajectory], int]:
    """Held-in and held-out episodes in one engine run (Ray starts only if there are any),
    stored by the collect stage's sink at ``traj_dir`` (a path or URI)."""
    families = [*cfg.families, *cfg.held_out]
    if fresh:
        storage.remove(traj_dir)
    if not families:
        return [], 0
    from agentray.collect import (
        ParquetSink,
        RolloutEngine,
        WatchedSink,
        check_expert_plays,
        load_tasks,
        read_trajectories,
    )
    from agentray.ray_utils import ensure_ray

    tasks = load_tasks(families, cfg.split, envs, cfg.max_tasks_per_family)
    check_expert_plays(cfg.policy, tasks, envs)
    sink = ParquetSink(
        traj_dir, flush_every=cfg.rollout.flush_every, max_attempts=cfg.rollout.attempts_allowed
    )
    ensure_ray()
    engine = RolloutEngine(cfg.rollout, cfg.policy, envs)
    try:
        asyncio.run(engine.run(tasks, WatchedSink(sink, errors), progress=progress))
    finally:
        engine.shutdown()
    return read_trajectories(traj_dir), len(tasks)
