"""scores.json and report.md from evaluated trajectories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentray.rollout.engine import summarize


def score_trajectories(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_family: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_family.setdefault(row["task"], []).append(row)
    tasks = {}
    for family, family_rows in sorted(by_family.items()):
        stats = summarize(family_rows)
        stats["score"] = stats["mean_reward"]  # success rate for 0/1 rewards
        tasks[family] = stats
    scores = [t["score"] for t in tasks.values()]
    return {"tasks": tasks, "held_in_mean": sum(scores) / len(scores) if scores else 0.0}


def write_report(
    out_dir: Path, scores: dict[str, Any], rows: list[dict[str, Any]], samples_per_family: int
) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    scores_path = out_dir / "scores.json"
    scores_path.write_text(json.dumps(scores, indent=2))
    report_path = out_dir / "report.md"
    report_path.write_text(render_markdown(scores, rows, samples_per_family))
    return scores_path, report_path


def render_markdown(scores: dict[str, Any], rows: list[dict[str, Any]], samples: int) -> str:
    lines = [
        "# agentray evaluation report",
        "",
        f"Model: `{scores.get('model', '?')}` at `{scores.get('base_url', '?')}`, "
        f"split `{scores.get('split', '?')}`.",
        "",
        "## Held-in tasks",
        "",
        "| task | episodes | score | success rate | mean turns | statuses |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for family, t in scores["tasks"].items():
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(t["statuses"].items()))
        lines.append(
            f"| {family} | {t['count']} | {t['score']:.3f} | {t['success_rate']:.1%} | "
            f"{t['mean_turns']:.2f} | {statuses} |"
        )
    lines += ["", f"Held-in mean score: **{scores['held_in_mean']:.3f}**", ""]
    lines += _samples(rows, samples)
    return "\n".join(lines) + "\n"


def _samples(rows: list[dict[str, Any]], per_family: int) -> list[str]:
    if per_family == 0:
        return []
    lines = ["## Sample trajectories", ""]
    seen: dict[str, int] = {}
    for row in sorted(rows, key=lambda r: r["id"]):
        if seen.get(row["task"], 0) >= per_family:
            continue
        seen[row["task"]] = seen.get(row["task"], 0) + 1
        lines += [f"### {row['id']} — reward {row['reward']:.2f}, status `{row['status']}`", ""]
        for turn in _episode_turns(row["conversations"])[-6:]:
            lines += [f"**{turn['from']}**:", "", "```", _shown(turn["value"]), "```", ""]
    return lines


def _episode_turns(conversations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The turns after the instruction and demonstration: the problem onwards."""
    last_demo = max((i for i, t in enumerate(conversations) if t["loss"] is False), default=-1)
    return conversations[last_demo + 1 :]


def _shown(value: str, limit: int = 600) -> str:
    if not value.strip():
        return f"(blank reply: {value[:40]!r})"
    return value if len(value) < limit else value[:limit] + " …"
