"""Two eval runs side by side (``agentray eval --compare RUN_A RUN_B``): typically the base
model and the tuned one. Reads each run's ``eval/scores.json``; writes ``compare.json``,
``compare.md`` (+ ``plots/``) and a self-contained ``compare.html`` into ``--out`` (default:
``RUN_B/eval/compare``). Runs and ``--out`` may be paths or URIs (``s3://bucket/run``)."""

from __future__ import annotations

import json
from typing import Any

from agentray import storage
from agentray.eval import plots
from agentray.eval.doc import Doc
from agentray.eval.overall import CATEGORIES
from agentray.eval.report import CATEGORY_TITLES, fmt


class CompareError(ValueError):
    """A run to compare has no readable scores.json; the message names the location."""


def find_scores(run: str) -> str:
    """``run`` (a path or URI) may be a run dir (with eval/scores.json), an eval dir or the
    file itself; the location of its scores.json."""
    location = storage.absolute(run)
    for candidate in (
        storage.join(location, "eval", "scores.json"),
        storage.join(location, "scores.json"),
        location,
    ):
        if _is_file(candidate):
            return candidate
    raise CompareError(f"{run}: no eval/scores.json found (run `agentray eval` on it first)")


def _is_file(location: str) -> bool:
    return storage.exists(location) and not storage.is_dir(location)


def _parent(location: str) -> str:
    return location.rstrip("/").rsplit("/", 1)[0]


def load_scores(run: str) -> dict[str, Any]:
    location = find_scores(run)
    try:
        scores = json.loads(storage.read_text(location))
    except ValueError as e:
        raise CompareError(f"{location}: not valid JSON ({e})") from None
    if not isinstance(scores, dict) or "categories" not in scores:
        raise CompareError(f"{location}: not an agentray scores.json (no 'categories')")
    return scores


def run_label(run: str) -> str:
    location = storage.absolute(run)
    if _is_file(location):
        location = _parent(location)
    if storage.name(location) == "eval":
        location = _parent(location)
    return storage.name(location)


def compare_runs(run_a: str, run_b: str, out_dir: str | None = None) -> dict[str, str]:
    """Compares two evaluated runs (paths or URIs); writes the comparison into ``out_dir``
    (a path or URI; default: beside RUN_B's scores.json, in ``compare``) and returns the
    locations of compare.json and the two pages."""
    a, b = load_scores(run_a), load_scores(run_b)
    labels = [run_label(run_a), run_label(run_b)]
    if labels[0] == labels[1]:
        labels = [f"A: {labels[0]}", f"B: {labels[1]}"]
    out = (
        storage.absolute(out_dir)
        if out_dir
        else storage.join(_parent(find_scores(run_b)), "compare")
    )
    comparison = compare_scores(a, b, labels)
    json_path = storage.write_json(storage.join(out, "compare.json"), comparison)
    md_path, html_path = render_comparison(comparison, a, b, labels).write(out, "compare")
    return {"json": json_path, "report": md_path, "report_html": html_path}


def compare_scores(a: dict[str, Any], b: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    """Per category: Overall and per-task scores of both runs and B - A."""
    out: dict[str, Any] = {"labels": labels, "categories": {}}
    for category in CATEGORIES:
        ca, cb = a["categories"].get(category, {}), b["categories"].get(category, {})
        tasks_a, tasks_b = ca.get("tasks", {}), cb.get("tasks", {})
        tasks = {}
        for task in dict.fromkeys([*tasks_a, *tasks_b]):
            sa = tasks_a.get(task, {}).get("score")
            sb = tasks_b.get(task, {}).get("score")
            tasks[task] = {"a": sa, "b": sb, "delta": _delta(sa, sb)}
        oa, ob = ca.get("overall"), cb.get("overall")
        out["categories"][category] = {
            "overall": {"a": oa, "b": ob, "delta": _delta(oa, ob)},
            "tasks": tasks,
        }
    out["same_reference"] = a.get("reference", {}).get("file") == b.get("reference", {}).get("file")
    return out


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else b - a


def render_comparison(
    comparison: dict[str, Any], a: dict[str, Any], b: dict[str, Any], labels: list[str]
) -> Doc:
    la, lb = labels
    doc = Doc(f"agentray comparison: {la} vs {lb}")
    doc.para(
        f"{la}: model `{a.get('model')}` at `{a.get('base_url')}` ({a.get('created', '')}); "
        f"{lb}: model `{b.get('model')}` at `{b.get('base_url')}` ({b.get('created', '')}). "
        f"Δ = {lb} − {la}."
    )
    if not comparison["same_reference"]:
        doc.para(
            "**The runs used different reference files**, so their Overall numbers are "
            "weighted differently."
        )
    cats = comparison["categories"]
    doc.heading("Overall")
    rows = [
        [
            CATEGORY_TITLES[c],
            fmt(v["overall"]["a"], 2),
            fmt(v["overall"]["b"], 2),
            _signed(v["overall"]["delta"], 2),
        ]
        for c, v in cats.items()
        if v["tasks"]
    ]
    doc.table(["category", la, lb, "Δ"], rows, {1, 2, 3})
    overall = {
        label: {c: v["overall"][key] for c, v in cats.items()}
        for label, key in ((la, "a"), (lb, "b"))
    }
    if any(x is not None for series in overall.values() for x in series.values()):
        doc.image("overall.png", plots.overall_bars(overall), "Overall, side by side")
    doc.heading("Scores per task")
    for category, v in cats.items():
        if not v["tasks"]:
            continue
        doc.heading(CATEGORY_TITLES[category], 3)
        rows = [[t, fmt(s["a"]), fmt(s["b"]), _signed(s["delta"])] for t, s in v["tasks"].items()]
        doc.table(["task", la, lb, "Δ"], rows, {1, 2, 3})
    series = {
        label: {
            c: {t: s[key] for t, s in v["tasks"].items() if s[key] is not None}
            for c, v in cats.items()
        }
        for label, key in ((la, "a"), (lb, "b"))
    }
    if any(series[la].values()) or any(series[lb].values()):
        doc.image("tasks.png", plots.task_bars(series), "scores per task, side by side")
    return doc


def _signed(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"
