"""The eval stage: held-in test splits through the rollout engine against a served model."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

from agentray.evaluation.config import EvalConfig
from agentray.evaluation.report import score_trajectories, write_report
from agentray.manifest import write_manifest
from agentray.ray_utils import ensure_ray
from agentray.rollout.engine import RolloutEngine, load_tasks
from agentray.rollout.sink import ParquetSink, read_trajectories


def run_eval(
    cfg: EvalConfig, run_dir: Path, progress: bool = True, fresh: bool = True
) -> dict[str, Any]:
    """Evaluate ``cfg.policy`` on the held-in families; returns the scores dict.

    ``fresh`` discards earlier eval trajectories of this run dir (a new model is being
    scored); pass False to resume an interrupted evaluation of the same model.
    """
    started = time.time()
    ensure_ray()
    out_dir = Path(run_dir) / "eval"
    traj_dir = out_dir / "trajectories"
    if fresh and traj_dir.exists():
        shutil.rmtree(traj_dir)
    tasks = load_tasks(cfg.families, cfg.split, cfg.family_configs, cfg.max_tasks_per_family)
    sink = ParquetSink(traj_dir, flush_every=cfg.rollout.flush_every)
    engine = RolloutEngine(cfg.rollout, cfg.policy, cfg.family_configs)
    try:
        asyncio.run(engine.run(tasks, sink, progress=progress))
    finally:
        engine.shutdown()
    rows = read_trajectories(traj_dir)
    scores = score_trajectories(rows)
    scores.update(model=cfg.policy.model, base_url=cfg.policy.base_url, split=cfg.split)
    scores_path, report_path = write_report(out_dir, scores, rows, cfg.sample_trajectories)
    write_manifest(
        out_dir,
        "eval",
        cfg,
        inputs={"tasks": len(tasks)},
        counts={k: v["count"] for k, v in scores["tasks"].items()},
        outputs={"scores": str(scores_path), "report": str(report_path)},
        started_at=started,
    )
    return scores
