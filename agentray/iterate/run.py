"""``agentray iterate``: rounds of explore -> merge -> process -> train -> eval, each stage
skipped where its manifest says it finished."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from agentray import pipeline, storage
from agentray.collect import CollectConfig
from agentray.config import PipelineConfig
from agentray.iterate.card import write_model_card
from agentray.iterate.merge import merge_round
from agentray.iterate.pairs import write_preference_pairs
from agentray.iterate.report import write_rounds_report
from agentray.manifest import code_version, write_manifest
from agentray.policies.config import HFConfig
from agentray.train import TrainConfig

console = Console()


def round_dir(cfg: PipelineConfig, k: int) -> str:
    return storage.join(storage.absolute(cfg.run_dir), f"round-{k}")


def finished(stage_dir: str) -> bool:
    """Whether the stage in ``stage_dir`` ran to the end: its manifest says ok."""
    location = storage.join(stage_dir, "manifest.json")
    return storage.exists(location) and storage.read_json(location).get("status") == "ok"


def model_of(cfg: PipelineConfig, k: int) -> str:
    return storage.join(round_dir(cfg, k), "train", "model")


def round_config(cfg: PipelineConfig, k: int) -> PipelineConfig:
    """The pipeline config of round ``k``: its own run dir; from round 1 on, process reads
    the merged trajectories (deduplicated there, so not again by task id) and train starts
    from the base model or round k-1's (with ``iterate.train_loss: dpo``, round k-1's, by DPO
    on the round's preference pairs)."""
    rc = cfg.model_copy(deep=True)
    rc.run_dir = round_dir(cfg, k)
    if k >= 1:
        rc.process.trajectories = [storage.join(rc.run_dir, "merge", "trajectories")]
        rc.process.dedup = False
        if cfg.iterate.train_from == "previous":
            rc.train.model = model_of(cfg, k - 1)
        if cfg.iterate.train_loss == "dpo":
            pairs = storage.join(rc.run_dir, "pairs", "pairs.parquet")
            dpo = rc.train.dpo.model_dump() | {"pairs": pairs}
            rc.train = TrainConfig.model_validate(
                rc.train.model_dump() | {"loss": "dpo", "dpo": dpo}
            )
    return rc


def explore_config(cfg: PipelineConfig, k: int, sample: int) -> CollectConfig:
    """Collect with round k-1's model on the train tasks, sampling at the temperature;
    every trajectory's policy dict carries the model's round."""
    it = cfg.iterate
    tokens = it.max_new_tokens or cfg.eval.policy.params.max_new_tokens
    params = cfg.eval.policy.params.model_copy(
        update={"temperature": it.temperature, "max_new_tokens": tokens}
    )
    policy = HFConfig(model=model_of(cfg, k - 1), device=it.device, params=params)
    return CollectConfig(
        families=it.families or cfg.collect.families,
        split="train",
        max_tasks_per_family=it.max_tasks_per_family or cfg.collect.max_tasks_per_family,
        policy=policy,
        policy_lineage={"round": k - 1, "sample": sample, "model": model_of(cfg, k - 1)},
        rollout=cfg.collect.rollout,
        max_error_fraction=cfg.collect.max_error_fraction,
    )


def run_iterate(cfg: PipelineConfig, rounds: int) -> dict[str, Any]:
    """Rounds 0 .. rounds-1 under ``<run_dir>/round-<k>/``; returns each round's summary."""
    results: dict[str, Any] = {"rounds": []}
    for k in range(rounds):
        console.rule(f"[bold]round {k}")
        results["rounds"].append(run_round(cfg, k))
    results["report"] = write_rounds_report(cfg.run_dir)["report"]
    return results


def run_round(cfg: PipelineConfig, k: int) -> dict[str, Any]:
    started = time.time()
    rc = round_config(cfg, k)
    here = rc.run_dir
    ran: list[str] = []
    if k == 0:
        _stage(storage.join(here, "collect"), ran, "collect", lambda: pipeline.stage_collect(rc))
    else:
        explored = [_explore(cfg, k, j, ran) for j in range(cfg.iterate.samples_per_task)]
        _stage(
            storage.join(here, "merge"),
            ran,
            "merge",
            lambda: merge_round(
                _earlier_data(cfg, k),
                explored,
                cfg.iterate,
                rc.process,
                storage.join(here, "merge"),
            ),
        )
        if cfg.iterate.preference_pairs:
            _stage(
                storage.join(here, "pairs"),
                ran,
                "pairs",
                lambda: write_preference_pairs(
                    explored, cfg.iterate, rc.process, storage.join(here, "pairs")
                ),
            )
    _stage(storage.join(here, "process"), ran, "process", lambda: pipeline.stage_process(rc))
    _stage(storage.join(here, "train"), ran, "train", lambda: pipeline.stage_train(rc))
    _stage(storage.join(here, "eval"), ran, "eval", lambda: _serve_and_eval(rc))
    card = write_model_card(here, k, cfg)
    summary = {"round": k, "run_dir": here, "ran": ran, "model": model_of(cfg, k), "card": card}
    write_manifest(
        here,
        "round",
        cfg,
        inputs=_round_inputs(cfg, k),
        counts={"ran": ran, "preference_pairs": _pairs_counts(here)},
        outputs={"model": model_of(cfg, k), "eval": storage.join(here, "eval"), "card": card},
        started_at=started,
    )
    return summary


def _pairs_counts(here: str) -> dict[str, Any] | None:
    location = storage.join(here, "pairs", "manifest.json")
    return storage.read_json(location)["counts"] if storage.exists(location) else None


def _stage(stage_dir: str, ran: list[str], name: str, fn: Callable[[], Any]) -> None:
    if finished(stage_dir):
        console.print(f"{name}: finished before ({stage_dir}/manifest.json), skipped")
        return
    console.rule(f"[bold]{name}")
    fn()
    ran.append(name)


def _explore(cfg: PipelineConfig, k: int, sample: int, ran: list[str]) -> dict[str, Any]:
    from agentray.collect import run_collect

    run = storage.join(round_dir(cfg, k), "explore", f"sample-{sample}")
    collect_cfg = explore_config(cfg, k, sample)
    _stage(
        storage.join(run, "collect"),
        ran,
        f"explore/sample-{sample}",
        lambda: run_collect(collect_cfg, run, envs=cfg.envs),
    )
    return {
        "path": storage.join(run, "collect", "trajectories"),
        "policy": {
            **collect_cfg.policy.model_dump(mode="json", include={"backend", "model"}),
            **collect_cfg.policy_lineage,
        },
        "round": k - 1,
        "sample": sample,
    }


def _earlier_data(cfg: PipelineConfig, k: int) -> list[dict[str, Any]]:
    """The data round k builds on: round k-1's merged trajectories, or the trajectory
    folders round 0's process read (the teacher's collect, and any given in the config)."""
    if k >= 2:
        path = storage.join(round_dir(cfg, k - 1), "merge", "trajectories")
        return [{"path": path, "round": k - 1, "policy": f"merged rounds <= {k - 1}"}]
    here = round_dir(cfg, 0)
    folders = storage.read_json(storage.join(here, "process", "manifest.json"))["inputs"]
    collect = storage.read_json(storage.join(here, "collect", "manifest.json"))
    teacher = collect["outputs"]["trajectories"]
    return [
        {
            "path": path,
            "round": "teacher",
            "policy": collect["config"]["policy"] if path == teacher else "given in the config",
        }
        for path in folders["trajectories"]
    ]


def _serve_and_eval(rc: PipelineConfig) -> dict[str, Any]:
    """Serve the round's model, evaluate it through the server (as ``run_pipeline`` does)."""
    from agentray.serve import start_server, stop_server

    serve_cfg = pipeline.serve_config_for_run(rc)
    base_url = start_server(serve_cfg)
    try:
        rc.eval.policy = pipeline.served_policy(
            rc.eval.policy, base_url, serve_cfg.served_model_name, rc.serve.api_key_env
        )
        return pipeline.stage_eval(rc)
    finally:
        stop_server(serve_cfg.app_name)


def _round_inputs(cfg: PipelineConfig, k: int) -> dict[str, Any]:
    here = round_dir(cfg, k)
    inputs: dict[str, Any] = {
        "code": code_version(),
        "process": storage.join(here, "process"),
        "train": storage.join(here, "train"),
    }
    if k == 0:
        inputs["collect"] = storage.join(here, "collect")
    else:
        inputs["merge"] = storage.join(here, "merge")
        inputs["previous_round"] = round_dir(cfg, k - 1)
    return inputs
