"""The report across rounds (``<run_dir>/rounds.md``, ``rounds.html``, ``rounds.json``,
``plots/``): scores by round per task and category, the data each round added, and how
often each family's exploration succeeded. Read only from the rounds' ``scores.json`` and
manifests, so it can be re-rendered at any time (``agentray iterate CONFIG --report-only``)."""

from __future__ import annotations

import io
from typing import Any

from matplotlib.figure import Figure

from agentray import storage

CATEGORIES = ("held_in", "held_out", "general")
TITLES = {"held_in": "Held-in", "held_out": "Held-out", "general": "General"}


def _json(location: str) -> dict[str, Any] | None:
    return storage.read_json(location) if storage.exists(location) else None


def round_dirs(run_dir: str) -> list[str]:
    """``round-0``, ``round-1``, ... of ``run_dir`` that exist, in order (stops at a gap)."""
    out = []
    while storage.exists(storage.join(run_dir, f"round-{len(out)}")):
        out.append(storage.join(run_dir, f"round-{len(out)}"))
    return out


def round_summary(here: str, k: int) -> dict[str, Any]:
    """One round's scores and data counts from its stage folders (None where not run)."""
    scores = _json(storage.join(here, "eval", "scores.json")) or {}
    process = (_json(storage.join(here, "process", "manifest.json")) or {}).get("counts", {})
    categories = {
        c: {
            "overall": scores.get("categories", {}).get(c, {}).get("overall"),
            "tasks": {
                task: t.get("score")
                for task, t in scores.get("categories", {}).get(c, {}).get("tasks", {}).items()
            },
        }
        for c in CATEGORIES
    }
    out = {
        "round": k,
        "evaluated": bool(scores),
        "categories": categories,
        "trained_agent_records": process.get("agent_unique_records"),
    }
    return out | (_teacher_data(here) if k == 0 else _explored_data(here, k))


def _teacher_data(here: str) -> dict[str, Any]:
    counts = (_json(storage.join(here, "collect", "manifest.json")) or {}).get("counts", {})
    return {
        "explored_by": "teacher",
        "explored": counts.get("episodes"),
        "passed": None,
        "kept_new": None,
        "merged": None,
        "exploration": {},
        "preference_pairs": None,
    }


def _explored_data(here: str, k: int) -> dict[str, Any]:
    counts = (_json(storage.join(here, "merge", "manifest.json")) or {}).get("counts", {})
    exploration = counts.get("exploration", {})
    return {
        "explored_by": f"round {k - 1}'s model",
        "explored": sum(f["episodes"] for f in exploration.values()) if counts else None,
        "passed": sum(f["passed"] for f in exploration.values()) if counts else None,
        "kept_new": counts.get("kept_by_source", {}).get(f"round-{k - 1}", 0) if counts else None,
        "merged": counts.get("kept"),
        "exploration": exploration,
        "preference_pairs": (_json(storage.join(here, "pairs", "manifest.json")) or {})
        .get("counts", {})
        .get("pairs"),
    }


def rounds_report(run_dir: str) -> dict[str, Any]:
    """Every round of ``run_dir`` (a path or URI), summarized."""
    run_dir = storage.absolute(run_dir)
    rounds = [round_summary(here, k) for k, here in enumerate(round_dirs(run_dir))]
    if not rounds:
        raise FileNotFoundError(f"{run_dir}: no round-0 folder (run `agentray iterate` first)")
    return {"run_dir": run_dir, "rounds": rounds}


def write_rounds_report(run_dir: str) -> dict[str, str]:
    """``rounds.json``, ``rounds.md`` (+ ``plots/``) and ``rounds.html`` under ``run_dir``;
    returns their locations."""
    from agentray.eval import Doc

    report = rounds_report(run_dir)
    out = report["run_dir"]
    doc = Doc("Self-improvement rounds")
    doc.para(f"Run: `{out}`; {len(report['rounds'])} rounds (round 0: the teacher's data).")
    _scores_section(doc, report["rounds"])
    _data_section(doc, report["rounds"])
    _exploration_section(doc, report["rounds"])
    json_path = storage.write_json(storage.join(out, "rounds.json"), report)
    md, page = doc.write(out, "rounds")
    return {"json": json_path, "report": md, "report_html": page}


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _scores_section(doc: Any, rounds: list[dict[str, Any]]) -> None:
    doc.heading("Scores by round")
    header = ["task", *(f"round {r['round']}" for r in rounds)]
    for c in CATEGORIES:
        tasks = list(dict.fromkeys(t for r in rounds for t in r["categories"][c]["tasks"]))
        if not tasks:
            continue
        doc.heading(TITLES[c], 3)
        rows = [[t, *(_fmt(r["categories"][c]["tasks"].get(t)) for r in rounds)] for t in tasks]
        rows.append(["**Overall**", *(_fmt(r["categories"][c]["overall"]) for r in rounds)])
        doc.table(header, rows, numeric=set(range(1, len(header))))
    doc.image("rounds_scores.png", scores_plot(rounds), "scores by round")


def _data_section(doc: Any, rounds: list[dict[str, Any]]) -> None:
    doc.heading("Data added per round")
    doc.para(
        "explored: episodes played on the train tasks (round 0: the teacher's); passed: those "
        "the reward filter keeps; kept new: this round's trajectories that joined the data "
        "(after dedup and keep_per_task); merged: agent trajectories of the round's data; "
        "trained: unique agent records in the round's training mix."
    )
    header = ["round", "explored by", "explored", "passed", "kept new", "merged", "trained"]
    rows = [
        [
            str(r["round"]),
            r["explored_by"],
            *(_fmt(r[key]) for key in ("explored", "passed", "kept_new", "merged")),
            _fmt(r["trained_agent_records"]),
        ]
        for r in rounds
    ]
    doc.table(header, rows, numeric={0, 2, 3, 4, 5, 6})
    pairs = [
        f"round {r['round']}: {r['preference_pairs']}" for r in rounds if r["preference_pairs"]
    ]
    if pairs:
        doc.para("Preference pairs (round-<k>/pairs): " + ", ".join(pairs) + ".")
    doc.image("rounds_data.png", data_plot(rounds), "data per round")


def _exploration_section(doc: Any, rounds: list[dict[str, Any]]) -> None:
    explored = [r for r in rounds if r["exploration"]]
    if not explored:
        return
    doc.heading("Exploration success rate per family")
    families = list(dict.fromkeys(f for r in explored for f in r["exploration"]))
    header = ["family", *(f"round {r['round']}" for r in explored)]
    rows = [[f, *(_rate_cell(r["exploration"].get(f)) for r in explored)] for f in families]
    doc.table(header, rows, numeric=set(range(1, len(header))))


def _rate_cell(counts: dict[str, Any] | None) -> str:
    if not counts:
        return "—"
    return f"{counts['passed']}/{counts['episodes']} ({counts['success_rate']:.2f})"


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def scores_plot(rounds: list[dict[str, Any]]) -> bytes:
    """One panel per category: each task's score (and the Overall, dashed) by round."""
    xs = [r["round"] for r in rounds]
    categories = [c for c in CATEGORIES if any(r["categories"][c]["tasks"] for r in rounds)]
    fig = Figure(figsize=(max(5.0, 4.2 * len(categories)), 3.6))
    axes = fig.subplots(1, max(len(categories), 1), squeeze=False)[0]
    for ax, c in zip(axes, categories, strict=False):
        tasks = list(dict.fromkeys(t for r in rounds for t in r["categories"][c]["tasks"]))
        for task in tasks:
            ys = [r["categories"][c]["tasks"].get(task) for r in rounds]
            ax.plot(xs, [float("nan") if y is None else y for y in ys], marker="o", label=task)
        ax.set_title(TITLES[c])
        ax.set_xticks(xs)
        ax.set_xlabel("round")
        ax.set_ylabel("score")
        ax.legend(fontsize=7)
    return _png(fig)


def data_plot(rounds: list[dict[str, Any]]) -> bytes:
    """Explored, passed and kept episodes per round (bars)."""
    keys = ("explored", "passed", "kept_new", "merged")
    fig = Figure(figsize=(6.0, 3.4))
    ax = fig.subplots()
    width = 0.8 / len(keys)
    for i, key in enumerate(keys):
        xs = [r["round"] + (i - (len(keys) - 1) / 2) * width for r in rounds]
        bars = ax.bar(xs, [r[key] or 0 for r in rounds], width, label=key)
        ax.bar_label(bars, fontsize=7, padding=1)
    ax.set_xticks([r["round"] for r in rounds])
    ax.set_xlabel("round")
    ax.set_ylabel("trajectories")
    ax.legend(fontsize=7)
    return _png(fig)
