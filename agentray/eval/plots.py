"""The report's figures as PNG bytes (matplotlib's object API: no pyplot state, no display).

Every figure takes one series per run (a label each), so the single-run report and the
side-by-side comparison draw the same pictures.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

from matplotlib.figure import Figure

from agentray.eval.overall import CATEGORIES

CATEGORY_TITLES = {"held_in": "Held-in", "held_out": "Held-out", "general": "General"}
TEN_POINT_TASKS = {"mt_bench"}  # scored 1-10; drawn x10 next to the percentages
COLORS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52")
STATUS_COLORS = {
    "completed": "#55A868",
    "correct": "#55A868",
    "passed": "#55A868",
    "rated": "#55A868",
    "wrong": "#C44E52",
    "failed": "#C44E52",
    "agent_invalid_action": "#DD8452",
    "no_answer": "#DD8452",
    "no_code": "#DD8452",
    "task_limit_reached": "#8172B3",
    "timed_out": "#8172B3",
    "agent_context_limit": "#937860",
    "context_limit": "#937860",
    "task_error": "#333333",
    "request_error": "#333333",
    "unrated": "#999999",
}

Series = Mapping[str, Mapping[str, Mapping[str, float | None]]]  # label -> category -> task


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def _shown(task: str, score: float | None) -> float:
    if score is None:
        return 0.0
    return score * 10 if task in TEN_POINT_TASKS else score


def task_bars(series: Series) -> bytes:
    """Per-task scores, one panel per category, one bar per run."""
    labels = list(series)
    categories = [c for c in CATEGORIES if any(series[lab].get(c) for lab in labels)]
    fig = Figure(figsize=(max(5.0, 4.2 * len(categories)), 3.8))
    axes = fig.subplots(1, max(len(categories), 1), squeeze=False)[0]
    for ax, category in zip(axes, categories, strict=False):
        tasks = list(dict.fromkeys(t for lab in labels for t in series[lab].get(category, {})))
        width = 0.8 / len(labels)
        for k, label in enumerate(labels):
            scores = [series[label].get(category, {}).get(t) for t in tasks]
            values = [_shown(t, score) for t, score in zip(tasks, scores, strict=True)]
            xs = [i + (k - (len(labels) - 1) / 2) * width for i in range(len(tasks))]
            bars = ax.bar(xs, values, width, label=label, color=COLORS[k % len(COLORS)])
            texts = ["" if score is None else f"{score:.1f}" for score in scores]
            ax.bar_label(bars, labels=texts, fontsize=7, padding=1)
        ax.set_xticks(range(len(tasks)))
        ax.set_xticklabels(
            [f"{t} (x10)" if t in TEN_POINT_TASKS else t for t in tasks], rotation=30, ha="right"
        )
        ax.set_title(CATEGORY_TITLES[category])
        ax.set_ylim(0, 105)
        ax.set_ylabel("score (%)")
    if len(labels) > 1:
        axes[0].legend(fontsize=8)
    return _png(fig)


def overall_bars(series: Mapping[str, Mapping[str, float | None]]) -> bytes:
    """Overall per category, one bar per run."""
    labels = list(series)
    categories = [c for c in CATEGORIES if any(series[lab].get(c) is not None for lab in labels)]
    fig = Figure(figsize=(5.5, 3.4))
    ax = fig.subplots()
    width = 0.8 / len(labels)
    for k, label in enumerate(labels):
        values = [series[label].get(c) or 0.0 for c in categories]
        xs = [i + (k - (len(labels) - 1) / 2) * width for i in range(len(categories))]
        bars = ax.bar(xs, values, width, label=label, color=COLORS[k % len(COLORS)])
        ax.bar_label(bars, fmt="%.2f", fontsize=8, padding=1)
    ax.axhline(1.0, color="#888888", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(categories)))
    ax.set_xticklabels([CATEGORY_TITLES[c] for c in categories])
    ax.set_ylabel("Overall (1.0 = reference models' mean)")
    if len(labels) > 1:
        ax.legend(fontsize=8)
    return _png(fig)


def status_bars(statuses: Mapping[str, Mapping[str, int]]) -> bytes:
    """Share of each status per task (horizontal stacked bars)."""
    tasks = list(statuses)
    names = sorted({s for by_status in statuses.values() for s in by_status})
    fig = Figure(figsize=(7.5, 0.45 * len(tasks) + 1.4))
    ax = fig.subplots()
    left = [0.0] * len(tasks)
    for status in names:
        shares = []
        for task in tasks:
            total = sum(statuses[task].values()) or 1
            shares.append(statuses[task].get(status, 0) / total)
        color = STATUS_COLORS.get(status)
        ax.barh(tasks, shares, left=left, label=status, color=color)
        left = [a + b for a, b in zip(left, shares, strict=True)]
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of episodes / items")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=4)
    return _png(fig)
