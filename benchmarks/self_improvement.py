"""Self-improvement: does the tuned tiny model get better when it explores the train tasks
and its successes join the data (``agentray iterate``)?

    python benchmarks/self_improvement.py [--run-dir DIR] [--rounds 3] [--train-tasks 60]
        [--eval-tasks 20] [--samples 2] [--temperature 0.8] [--keep-per-task 2]
        [--epochs 2] [--max-steps N] [--lr 2e-3] [--workers 2] [--max-new-tokens 96]
        [--train-from base] [--ray-cpus 2] [--budget-min 25] [--fresh]

Mind2Web, the family where the tiny model learns on CPU, with learning_signal.py's
settings (one demonstration, at most 4 steps, eta = 1: agent data only, greedy eval):
  round 0   the scripted expert plays the --train-tasks train tasks -> process -> train
            the tiny model -> serve -> eval on the --eval-tasks test tasks
  round k   round k-1's model plays every train task --samples times at --temperature;
            the episodes that pass Mind2Web's own reward filter (r >= 2/3) join the data
            (dedup, --keep-per-task per task), train (from the base model unless
            --train-from previous), serve, eval

Printed: per round, the test score (mean reward x 100), success rate, episodes explored,
passed and newly kept, the merged data's size, the round's wall time, and the budget used.
A round that would start after --budget-min is not started (the rounds run so far are
reported, and the exit status is 1). Stages already in --run-dir are reused.
The report across rounds is ``<run-dir>/rounds.md`` (+ rounds.html, plots/).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from agentray.config import PipelineConfig, validate_config
from agentray.testing import free_port

FAMILY = "mind2web"


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    return validate_config(
        {
            "run_dir": str(args.run_dir),
            "envs": {
                FAMILY: {
                    "n_train": args.train_tasks,
                    "n_test": args.eval_tasks,
                    "n_shots": 1,
                    "max_steps": 4,
                }
            },
            "collect": {"families": [FAMILY]},
            "process": {"eta": 1.0, "max_seq_len": 2048, "packing": {"enabled": True}},
            "train": {
                "num_workers": args.workers,
                "epochs": args.epochs,
                "max_steps": args.max_steps,
                "max_seq_len": 2048,
                "micro_batch_size": 1,
                "lr": args.lr,
                "warmup_ratio": 0.05,
                "log_every_steps": 20,
            },
            "serve": {"port": free_port(), "max_batch_size": 32},
            "eval": {
                "families": [FAMILY],
                "general": {"suites": []},
                "policy": {
                    "backend": "openai",
                    "model": "agentray",
                    "params": {"max_new_tokens": args.max_new_tokens, "temperature": 0.0},
                },
            },
            "iterate": {
                "samples_per_task": args.samples,
                "temperature": args.temperature,
                "keep_per_task": args.keep_per_task,
                "train_from": args.train_from,
                "max_new_tokens": args.max_new_tokens,
            },
        },
        source="benchmarks/self_improvement.py",
    )


def rows(run_dir: str) -> list[dict[str, Any]]:
    """Per round: the report's figures plus the Mind2Web success rate from scores.json."""
    from agentray import storage
    from agentray.iterate.report import rounds_report

    out = []
    for r in rounds_report(run_dir)["rounds"]:
        scores_file = storage.join(run_dir, f"round-{r['round']}", "eval", "scores.json")
        scores = storage.read_json(scores_file) if storage.exists(scores_file) else {}
        task = scores.get("categories", {}).get("held_in", {}).get("tasks", {}).get(FAMILY, {})
        out.append(r | {"score": task.get("score"), "success": task.get("success_rate")})
    return out


def print_table(table: list[dict[str, Any]], wall: dict[int, float]) -> None:
    print(
        f"\n{'round':>5} {'score':>7} {'success':>8} {'explored':>9} {'passed':>7} "
        f"{'kept new':>9} {'merged':>7} {'trained':>8} {'wall s':>7}"
    )

    def cell(value: Any, width: int, digits: int = 1) -> str:
        text = (
            "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else value
        )
        return f"{text!s:>{width}}"

    for r in table:
        success = None if r["success"] is None else 100.0 * r["success"]
        print(
            f"{r['round']:>5} {cell(r['score'], 7)} {cell(success, 8)} "
            f"{cell(r['explored'], 9)} {cell(r['passed'], 7)} {cell(r['kept_new'], 9)} "
            f"{cell(r['merged'], 7)} {cell(r['trained_agent_records'], 8)} "
            f"{cell(wall.get(r['round']), 7, 0)}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run-dir", type=Path, default=Path("/tmp/agentray-self-improvement"))
    parser.add_argument("--rounds", type=int, default=3, help="rounds 0 .. N-1")
    parser.add_argument("--train-tasks", type=int, default=60, help="Mind2Web train tasks")
    parser.add_argument("--eval-tasks", type=int, default=20, help="Mind2Web test tasks")
    parser.add_argument("--samples", type=int, default=2, help="episodes per train task")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--keep-per-task", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--workers", type=int, default=2, help="Ray Train workers")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--train-from", choices=["base", "previous"], default="base")
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--budget-min", type=float, default=25.0, help="wall time allowed")
    parser.add_argument("--fresh", action="store_true", help="discard an earlier run dir")
    args = parser.parse_args()
    if args.fresh and args.run_dir.exists():
        shutil.rmtree(args.run_dir)

    from agentray.iterate.report import write_rounds_report
    from agentray.iterate.run import run_round
    from agentray.ray_utils import ensure_ray

    cfg = pipeline_config(args)
    ensure_ray(num_cpus=args.ray_cpus)
    budget_s = args.budget_min * 60
    started = time.perf_counter()
    wall: dict[int, float] = {}
    for k in range(args.rounds):
        used = time.perf_counter() - started
        if used >= budget_s:
            print(f"budget of {args.budget_min:.0f} min used up before round {k}: stopping")
            break
        t0 = time.perf_counter()
        run_round(cfg, k)
        wall[k] = time.perf_counter() - t0
    used = time.perf_counter() - started
    report = write_rounds_report(cfg.run_dir)
    print_table(rows(cfg.run_dir), wall)
    within = used <= budget_s and len(wall) == args.rounds
    print(
        f"\nbudget: {used / 60:.1f} of {args.budget_min:.0f} min used "
        f"({'inside' if within else 'OVER or cut short'}); rounds run {len(wall)}/{args.rounds}"
    )
    print(f"report: {report['report']} ({report['report_html']})")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
