"""``agentray quickstart``: the whole loop on the tiny model, then the tuned model beside the
base model and the teacher on the same test tasks, in one table a newcomer reads at a glance.

The teacher is evaluated through the same OpenAI-compatible path as the tuned model (the
scripted expert behind a real HTTP endpoint), so its scores show that the evaluation itself
is right; the base model (the tuned one's starting point) runs as a local ``hf`` policy.
Beside the scores (which a tiny model trained for a minute keeps near 0) the table shows
what it does learn first: its replies' action format, per family.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.table import Table

from agentray import storage
from agentray.config import PipelineConfig
from agentray.envs.config import family_config_dicts
from agentray.eval import run_eval
from agentray.pipeline import console, run_dir_of, run_pipeline
from agentray.policies.config import HFConfig, OpenAIConfig
from agentray.testing.expert_endpoint import ExpertEndpoint

MODELS = ("teacher", "base", "tuned")


def run_quickstart(cfg: PipelineConfig) -> dict[str, Any]:
    """The pipeline, then the teacher and the base model on the tuned model's eval tasks;
    writes ``<run_dir>/quickstart.md`` and returns the pipeline's results with ``side_by_side``."""
    results = run_pipeline(cfg)
    run = run_dir_of(cfg)
    start = time.perf_counter()
    console.rule("[bold]baselines: the teacher and the base model on the same tasks")
    scores = {
        "teacher": _eval_teacher(cfg, storage.join(run, "baselines", "teacher")),
        "base": _eval_base(cfg, storage.join(run, "baselines", "base")),
        "tuned": storage.read_json(storage.join(run, "eval", "scores.json")),
    }
    results["timings_s"]["baselines"] = round(time.perf_counter() - start, 1)
    rows = side_by_side(scores, cfg.eval.families)
    train = storage.read_json(storage.join(run, "train", "manifest.json"))["counts"]
    text = side_by_side_markdown(rows, results["timings_s"], train)
    results["side_by_side"] = storage.write_text(storage.join(run, "quickstart.md"), text)
    Console().print(side_by_side_table(rows))
    return results


def _agent_only(cfg: PipelineConfig, policy: Any):
    """The eval config of a baseline: the same tasks and generation, env families only."""
    general = cfg.eval.general.model_copy(update={"suites": []})
    return cfg.eval.model_copy(update={"policy": policy, "general": general})


def _eval_teacher(cfg: PipelineConfig, run: str) -> dict[str, Any]:
    """The scripted expert over HTTP. It listens on every interface and is reached by this
    node's IP: on a cluster the eval's policy actors run on other nodes, whose 127.0.0.1 is
    not this one. The endpoint takes no key (``api_key_env=None``)."""
    configs = family_config_dicts(cfg.envs)
    with ExpertEndpoint(host="0.0.0.0", families=cfg.eval.families, family_configs=configs) as ep:
        policy = OpenAIConfig(
            model="expert",
            base_url=teacher_url(ep.port),
            api_key_env=None,
            params=cfg.eval.policy.params,
        )
        return run_eval(_agent_only(cfg, policy), run, envs=cfg.envs)


def teacher_url(port: int) -> str:
    """``base_url`` of an endpoint on this node, as other nodes reach it."""
    import ray

    return f"http://{ray.util.get_node_ip_address()}:{port}/v1"


def _eval_base(cfg: PipelineConfig, run: str) -> dict[str, Any]:
    policy = HFConfig(model=cfg.model, params=cfg.eval.policy.params)
    return run_eval(_agent_only(cfg, policy), run, envs=cfg.envs)


def side_by_side(scores: dict[str, dict[str, Any]], families: list[str]) -> list[dict[str, Any]]:
    """Per family: each model's score, and the base and tuned models' reply format."""
    rows = []
    for family in families:
        tasks = {m: scores[m]["categories"]["held_in"]["tasks"].get(family) for m in MODELS}
        if not any(tasks.values()):
            continue
        row: dict[str, Any] = {"family": family}
        for model, task in tasks.items():
            row[f"{model}_score"] = None if task is None else task["score"]
            for key in ("well_formed_replies", "invalid_action_episodes"):
                row[f"{model}_{key}"] = None if task is None else task.get(key)
        row["metric"] = next(t["metric"] for t in tasks.values() if t)
        rows.append(row)
    return rows


COLUMNS = (
    ("family", "family"),
    ("metric", "metric"),
    ("teacher", "teacher_score"),
    ("base", "base_score"),
    ("tuned", "tuned_score"),
    (
        "well-formed replies (base → tuned)",
        ("base_well_formed_replies", "tuned_well_formed_replies"),
    ),
    (
        "invalid-action endings (base → tuned)",
        ("base_invalid_action_episodes", "tuned_invalid_action_episodes"),
    ),
)


def _cells(row: dict[str, Any]) -> list[str]:
    cells = []
    for _, key in COLUMNS:
        if isinstance(key, tuple):
            cells.append(" → ".join(_share(row[k]) for k in key))
        elif key.endswith("_score"):
            cells.append("—" if row[key] is None else f"{row[key]:.1f}")
        else:
            cells.append(str(row[key]))
    return cells


def _share(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def side_by_side_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="the tuned model beside its base model and its teacher (test tasks)")
    for title, _ in COLUMNS:
        table.add_column(title, justify="left" if title in ("family", "metric") else "right")
    for row in rows:
        table.add_row(*_cells(row))
    return table


def side_by_side_markdown(
    rows: list[dict[str, Any]], timings: dict[str, float], train: dict[str, Any]
) -> str:
    lines = [
        "# agentray quickstart: the tuned model beside its base model and its teacher",
        "",
        "Scores on the same test tasks, through the same rollout engine. The teacher is the "
        "scripted expert behind an OpenAI-compatible endpoint (the path the tuned model is "
        "evaluated through), so its scores show the evaluation is right. A tiny model "
        "trained for a minute on a CPU scores 0: it learns the tokens' distribution first "
        "(its loss below) and starts on the action format (the last two columns) after about "
        "1,200 steps (`benchmarks/learning_signal.py`).",
        "",
        "| " + " | ".join(title for title, _ in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(_cells(row)) + " |" for row in rows),
        "",
        f"Training: {train['steps']} steps, loss {train['first_loss']:.2f} → "
        f"{train['last_loss']:.2f} at {train['tokens_per_s']:,.0f} tokens/s "
        "(`train/metrics.jsonl`, `train/loss.png`).",
        "",
        "Seconds per stage: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()),
        "",
        "Full reports: `eval/report.md` (tuned), `baselines/base/eval/report.md`, "
        "`baselines/teacher/eval/report.md`.",
        "",
    ]
    return "\n".join(lines)
