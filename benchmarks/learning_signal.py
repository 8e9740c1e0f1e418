"""Learning signal: does fine-tuning on expert trajectories teach the tiny model to act?

    python benchmarks/learning_signal.py [--run-dir DIR] [--families F ...]
        [--train-tasks 250] [--eval-tasks 30] [--epochs 2] [--micro-batch 1]
        [--max-steps N] [--lr 2e-3] [--max-new-tokens 128] [--budget-min 20] [--fresh]

The whole loop on the real stages, agent data only:
  collect   the scripted expert plays every task of each family's train split, made
            --train-tasks long (every trajectory reward 1, the paper's filter); Mind2Web
            with one demonstration and at most 4 steps, so episodes fit the tiny model's
            4,096-token window
  process   eta = 1 (expert trajectories alone: no general data), Llama-2-chat template,
            loss on the assistant's own turns, best-fit packs of 2048 tokens
  train     the tiny default model (``agentray/tiny-llama``, randomly initialised) for
            --epochs passes (or --max-steps), 2 Ray Train workers of --micro-batch packs,
            ZeRO-2
  serve     the base model, then the tuned one, each behind ``agentray serve``'s app
  eval      each one on every task of each family's *test* split, made --eval-tasks long
            (the family settings of collection, so no test task is a train task), through
            the OpenAI client and the rollout engine, greedy decoding

Printed: per family, base vs tuned score (mean reward x 100), success rate, and the share
of episodes that ended on an invalid action, plus the train time against --budget-min.
Goal (issue 7): tuned beats base on at least one family; the exit status is 0 only then
(and when training stayed inside the budget).

Stages whose output is already in --run-dir are reused, so a second run only re-evaluates
(delete the folder, or pass --fresh, to start over).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from agentray import storage
from agentray.config import PipelineConfig, validate_config
from agentray.envs.registry import family_names
from agentray.model.tiny import TINY_MODEL, resolve_model
from agentray.testing import free_port
from agentray.types import Status


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    families = args.families or family_names()
    family_configs = {f: {"n_train": args.train_tasks, "n_test": args.eval_tasks} for f in families}
    # A Mind2Web episode of up to 8 steps with one demonstration is 3.4k-7.9k tokens of the
    # tiny tokenizer even when played perfectly: past the tiny model's 4,096-token window.
    # One demonstration and at most 4 steps keep every episode inside it (2.2k-2.9k).
    family_configs.get("mind2web", {}).update(n_shots=1, max_steps=4)
    return validate_config(
        {
            "run_dir": str(args.run_dir),
            "envs": family_configs,  # collect and eval play the same tasks: test stays apart
            "collect": {"families": families},
            "process": {
                "eta": 1.0,
                "max_seq_len": 2048,
                "packing": {"enabled": True},
            },
            "train": {
                "num_workers": 2,
                "epochs": args.epochs,
                "max_steps": args.max_steps,
                "max_seq_len": 2048,
                "micro_batch_size": args.micro_batch,
                "lr": args.lr,
                "warmup_ratio": 0.05,
                "log_every_steps": 20,
            },
            "serve": {"port": free_port(), "max_batch_size": 32},
            "eval": {
                "families": families,
                "general": {"suites": []},
                "sample_trajectories": 2,
                "policy": {
                    "backend": "openai",
                    "model": "agentray",  # both set per model when it is served
                    "base_url": "http://127.0.0.1:8000/v1",
                    "params": {"max_new_tokens": args.max_new_tokens, "temperature": 0.0},
                },
            },
        },
        source="benchmarks/learning_signal.py",
    )


def run_stage(name: str, fn, cfg: PipelineConfig) -> float:
    """Run a stage unless it finished before (its manifest is written last); returns the
    seconds it took (0 if reused). An interrupted collection resumes where it stopped."""
    done = Path(cfg.run_dir) / name / "manifest.json"
    if done.exists():
        print(f"[{name}] reusing {done.parent}")
        return 0.0
    start = time.perf_counter()
    fn(cfg)
    seconds = time.perf_counter() - start
    print(f"[{name}] {seconds:.0f}s")
    return seconds


def evaluate(cfg: PipelineConfig, model: str, label: str) -> dict[str, Any]:
    """Serve ``model``, score it on the test splits, stop serving; the eval's scores dict."""
    from agentray.eval.run import run_eval
    from agentray.serve.app import start_server, stop_server

    serve_cfg = cfg.serve.model_copy(update={"model": model, "app_name": f"signal-{label}"})
    eval_cfg = cfg.eval.model_copy(deep=True)
    eval_cfg.policy.base_url = start_server(serve_cfg)
    eval_cfg.policy.model = serve_cfg.served_model_name
    try:
        start = time.perf_counter()
        scores = run_eval(
            eval_cfg,
            storage.join(storage.absolute(cfg.run_dir), label),
            progress=True,
            envs=cfg.envs,
        )
        print(f"[eval {label}] {time.perf_counter() - start:.0f}s")
    finally:
        stop_server(serve_cfg.app_name)
    return scores


def family_rows(scores: dict[str, Any]) -> dict[str, dict[str, float]]:
    """family -> score, success rate and invalid-action share, from an eval's scores.json."""
    tasks = scores["categories"]["held_in"]["tasks"]
    rows = {}
    for family, task in tasks.items():
        invalid = task["statuses"].get(Status.AGENT_INVALID_ACTION.value, 0)
        rows[family] = {
            "score": task["score"],
            "success": 100.0 * task["success_rate"],
            "invalid": 100.0 * invalid / max(task["count"], 1),
            "count": task["count"],
        }
    return rows


def print_table(base: dict[str, dict[str, float]], tuned: dict[str, dict[str, float]]) -> list[str]:
    """The side-by-side table; returns the families where tuned scores above base."""
    print(
        f"\n{'family':<12}{'tasks':>6}  {'score base':>10}{'tuned':>8}  "
        f"{'success base':>12}{'tuned':>8}  {'invalid% base':>13}{'tuned':>8}"
    )
    better = []
    for family in base:
        b, t = base[family], tuned[family]
        if t["score"] > b["score"]:
            better.append(family)
        print(
            f"{family:<12}{b['count']:>6}  {b['score']:>10.1f}{t['score']:>8.1f}  "
            f"{b['success']:>12.1f}{t['success']:>8.1f}  "
            f"{b['invalid']:>13.1f}{t['invalid']:>8.1f}"
            + ("   <- tuned better" if family in better else "")
        )
    return better


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/agentray-learning-signal"))
    parser.add_argument("--families", nargs="*", default=None, help="default: all six")
    parser.add_argument(
        "--train-tasks", type=int, default=250, help="train split size (expert episodes) per family"
    )
    parser.add_argument(
        "--eval-tasks", type=int, default=30, help="test split size (episodes) per family"
    )
    parser.add_argument("--micro-batch", type=int, default=1, help="packs per worker per step")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--budget-min", type=float, default=20.0, help="train time allowed")
    parser.add_argument("--fresh", action="store_true", help="discard an earlier run dir")
    args = parser.parse_args()
    if args.fresh and args.run_dir.exists():
        shutil.rmtree(args.run_dir)

    from agentray.pipeline import stage_collect, stage_process, stage_train

    cfg = pipeline_config(args)
    run_dir = Path(cfg.run_dir)
    seconds = {
        "collect": run_stage("collect", stage_collect, cfg),
        "process": run_stage("process", stage_process, cfg),
        "train": run_stage("train", stage_train, cfg),
    }
    train_summary = json.loads((run_dir / "train" / "manifest.json").read_text())
    base = family_rows(evaluate(cfg, resolve_model(TINY_MODEL), "eval-base"))
    tuned = family_rows(evaluate(cfg, str(run_dir / "train" / "model"), "eval-tuned"))

    better = print_table(base, tuned)
    train_s = seconds["train"] or train_summary["wall_s"]
    within = train_s <= args.budget_min * 60
    print(
        f"\ntrain: {train_s / 60:.1f} min (budget {args.budget_min:.0f} min: "
        f"{'inside' if within else 'OVER'}); stage seconds {json.dumps(seconds)}"
    )
    print(f"reports: {run_dir}/eval-base/eval/report.html, {run_dir}/eval-tuned/eval/report.html")
    verdict = "PASS" if better and within else "FAIL"
    print(
        f"tuned beats base on {len(better)} of {len(base)} families ({', '.join(better)}): {verdict}"
    )
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
