"""scores.json, report.md and report.html of one eval run.

``scores.json``: per category (held_in, held_out, general) the task scores on the paper's
scale (percent; MT-Bench 1-10), each with its item count and status counts, and the
category's Overall (``overall.py``) with the weight each task got, the tasks that got none
and why, and the reference tasks not run; ``overall`` repeats the three Overall numbers.

A task whose episodes or items mostly ended in infrastructure errors (``task_error``,
``request_error``: more than ``eval.max_error_fraction``) is *not measured*: it moves from
``tasks`` to ``not_measured`` (errors, count, first error), gets no score and is left out
of the Overall; ``status`` is then ``failed``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from agentray import storage
from agentray.collect import summarize
from agentray.envs.base import Env
from agentray.envs.registry import ENVS, env_class, metric_label
from agentray.eval import plots
from agentray.eval.doc import Doc
from agentray.eval.overall import CATEGORIES, ReferenceScores, category_overall
from agentray.failures import one_line
from agentray.records import Trajectory
from agentray.types import Status

CATEGORY_TITLES = plots.CATEGORY_TITLES


def env_task_scores(records: list[Trajectory], families: Iterable[str]) -> dict[str, Any]:
    """Per family of ``families``: the rollout summary plus ``score`` = mean reward x 100."""
    by_family: dict[str, list[Trajectory]] = {f: [] for f in families}
    for record in records:
        if record.task in by_family:
            by_family[record.task].append(record)
    tasks = {}
    for family, family_rows in by_family.items():
        if not family_rows:
            continue
        stats = summarize(family_rows)
        stats["score"] = 100.0 * stats["mean_reward"]
        stats["metric"] = metric_label(family)
        stats.update(action_format(family_rows, family))
        tasks[family] = stats
    return tasks


def action_format(records: list[Trajectory], family: str) -> dict[str, Any]:
    """What a model learns first: ``well_formed_replies``, the share of the agent's own
    replies that parse in ``family``'s action format (None for a family without a parser
    here), and ``invalid_action_episodes``, the share of episodes that ended on a reply
    that was no action."""
    ended_invalid = sum(r.status == Status.AGENT_INVALID_ACTION for r in records)
    out: dict[str, Any] = {"invalid_action_episodes": ended_invalid / len(records)}
    check = _format_check(family)
    replies = [
        turn["value"]
        for record in records
        for turn in record.conversations
        if turn["from"] == "gpt" and turn["loss"] is not False
    ]
    out["well_formed_replies"] = (
        sum(check(reply) is None for reply in replies) / len(replies)
        if check is not None and replies
        else None
    )
    return out


def _format_check(family: str) -> Callable[[str], str | None] | None:
    """The family's action-format parser, or None when it has none of its own."""
    if family not in ENVS:
        return None
    check = env_class(family).action_problem
    return None if check is Env.action_problem else check


INFRA_STATUSES = ("task_error", "request_error")


def first_errors(
    env_rows: list[Trajectory], general_results: dict[str, list[dict[str, Any]]]
) -> dict[str, str]:
    """Per task (family or suite): the error of its first episode (by id) or item (in
    order) that ended in an infrastructure error."""
    out: dict[str, str] = {}
    for row in sorted(env_rows, key=lambda r: r.id):
        if row.status.value in INFRA_STATUSES:
            out.setdefault(row.task, row.error or row.status.value)
    for suite, results in general_results.items():
        for result in results:
            if result.get("status") in INFRA_STATUSES:
                out.setdefault(suite, str(result.get("error") or result["status"]))
    return out


def set_aside_unmeasured(
    task_scores: dict[str, dict[str, Any]], errors: dict[str, str], max_fraction: float
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Split each category's tasks into (measured, not measured): a task is not measured
    when more than ``max_fraction`` of its episodes / items ended in an infrastructure
    error; ``errors``: each task's first such error."""
    measured: dict[str, dict[str, Any]] = {}
    unmeasured: dict[str, dict[str, Any]] = {}
    for category, tasks in task_scores.items():
        measured[category], unmeasured[category] = {}, {}
        for task, t in tasks.items():
            n_errors = sum(t["statuses"].get(s, 0) for s in INFRA_STATUSES)
            if t["count"] and n_errors / t["count"] > max_fraction:
                unmeasured[category][task] = {
                    "errors": n_errors,
                    "count": t["count"],
                    "first_error": errors.get(task),
                    "metric": t.get("metric", ""),
                    "statuses": t["statuses"],
                }
            else:
                measured[category][task] = t
    return measured, unmeasured


def unmeasured_text(info: dict[str, Any]) -> str:
    """How the report shows a task that was not measured."""
    first = one_line(info["first_error"] or "no error message", limit=160)
    return f"not measured ({info['errors']} errors: {first})"


def build_scores(
    task_scores: dict[str, dict[str, Any]],
    skipped: dict[str, dict[str, str]],
    reference: ReferenceScores,
    reference_file: str | None,
    meta: dict[str, Any],
    not_measured: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> dict[str, Any]:
    """``task_scores``: category -> task -> summary (with ``score``); ``skipped``: category
    -> task -> reason; ``not_measured``: category -> task -> errors (no score; left out of
    the Overall)."""
    not_measured = not_measured or {}
    categories = {}
    for category in CATEGORIES:
        tasks = task_scores.get(category, {})
        ours = {task: t["score"] for task, t in tasks.items()}
        ours.update(dict.fromkeys(skipped.get(category, {})))
        categories[category] = {
            "tasks": tasks,
            "skipped": skipped.get(category, {}),
            "not_measured": not_measured.get(category, {}),
            **category_overall(ours, reference, category),
        }
    run_tasks = [t for c in categories.values() for t in (*c["tasks"], *c["skipped"])]
    failed = any(c["not_measured"] for c in categories.values())
    return {
        **meta,
        "status": "failed" if failed else "ok",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "categories": categories,
        "overall": {c: categories[c]["overall"] for c in CATEGORIES},
        "reference": {
            "file": reference_file or "packaged: agentray/eval/data/agenttuning_reference.json",
            "source": reference.source,
            "reference_models": reference.reference_models,
            "match_notes": {
                t: reference.match_notes[t] for t in run_tasks if t in reference.match_notes
            },
        },
    }


def write_report(
    out_dir: str,
    scores: dict[str, Any],
    env_rows: list[Trajectory],
    general_results: dict[str, list[dict[str, Any]]],
    samples: int,
) -> dict[str, str]:
    """scores.json, report.md (+ plots/) and report.html under ``out_dir`` (a path or URI);
    returns their locations."""
    scores_path = storage.write_json(storage.join(out_dir, "scores.json"), scores)
    doc = render_report(scores, env_rows, general_results, samples)
    md_path, html_path = doc.write(out_dir, "report")
    return {"scores": scores_path, "report": md_path, "report_html": html_path}


def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def render_report(
    scores: dict[str, Any],
    env_rows: list[Trajectory],
    general_results: dict[str, list[dict[str, Any]]],
    samples: int,
) -> Doc:
    doc = Doc("agentray evaluation report")
    doc.para(
        f"Model `{scores.get('model', '?')}` at `{scores.get('base_url', '?')}`; env tasks on "
        f"the `{scores.get('split', '?')}` split; {scores.get('created', '')}."
    )
    if scores.get("status") == "failed":
        doc.para(f"**FAILED**: {failed_summary(scores)}.")
    _overall_section(doc, scores)
    _tasks_section(doc, scores)
    _status_section(doc, scores)
    _notes_section(doc, scores)
    _samples_section(doc, env_rows, general_results, samples)
    return doc


def _overall_section(doc: Doc, scores: dict[str, Any]) -> None:
    ref = scores["reference"]
    doc.heading("Overall")
    doc.para(
        "As in the paper: each task's weight is 1 / (mean score of the reference models "
        f"{', '.join(ref['reference_models'])} on it); a category's Overall is the mean over "
        "its tasks of score x weight (1.0 = the reference models' average). Reference scores: "
        f"{ref['source'] or ref['file']} (`{ref['file']}`)."
    )
    rows = []
    for category in CATEGORIES:
        c = scores["categories"][category]
        if not _listed(c):
            continue
        not_run = ", ".join(c["reference_tasks_not_run"]) or "none"
        rows.append(
            [CATEGORY_TITLES[category], fmt(c["overall"], 2), str(len(c["weights"])), not_run]
        )
    doc.table(["category", "Overall", "tasks weighted", "reference tasks not run"], rows, {1, 2})
    unmeasured = _unmeasured(scores)
    if unmeasured:
        doc.para(
            "The Overall leaves out the tasks that were not measured (most of their episodes "
            "or items ended in task_error / request_error): " + ", ".join(unmeasured) + "."
        )
    if any(v is not None for v in scores["overall"].values()):
        doc.image("overall.png", plots.overall_bars({"this run": scores["overall"]}), "Overall")


def _tasks_section(doc: Doc, scores: dict[str, Any]) -> None:
    doc.heading("Scores per task")
    for category in CATEGORIES:
        c = scores["categories"][category]
        if not _listed(c):
            continue
        doc.heading(CATEGORY_TITLES[category], 3)
        rows = []
        for task, t in c["tasks"].items():
            weight = c["weights"].get(task)
            rows.append(
                [
                    task,
                    t.get("metric", ""),
                    str(t["count"]),
                    fmt(t["score"]),
                    _share(t.get("well_formed_replies")),
                    fmt(weight, 4),
                    fmt(c["contributions"].get(task), 3),
                    c["reference_task"].get(task, "—"),
                    _statuses(t["statuses"]),
                ]
            )
        for task, info in c.get("not_measured", {}).items():
            shown = [unmeasured_text(info), "—", "—", "—", "—", _statuses(info["statuses"])]
            rows.append([task, info["metric"], str(info["count"]), *shown])
        for task, reason in c["skipped"].items():
            rows.append([task, "", "0", "skipped", "—", "—", "—", "—", reason])
        header = [
            "task",
            "metric",
            "n",
            "score",
            "well-formed replies",
            "weight",
            "score x weight",
            "paper task",
            "statuses",
        ]
        doc.table(header, rows, {2, 3, 4, 5, 6})
    series = {
        c: {t: v["score"] for t, v in scores["categories"][c]["tasks"].items()} for c in CATEGORIES
    }
    if any(series.values()):
        doc.image("tasks.png", plots.task_bars({"this run": series}), "scores per task")


def _share(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def _listed(category: dict[str, Any]) -> bool:
    return bool(category["tasks"] or category["skipped"] or category.get("not_measured"))


def _unmeasured(scores: dict[str, Any]) -> list[str]:
    """``task (category)`` of every task not measured."""
    return [
        f"{task} ({category})"
        for category in CATEGORIES
        for task in scores["categories"][category].get("not_measured", {})
    ]


def failed_summary(scores: dict[str, Any]) -> str:
    """One line: which tasks were not measured and why."""
    parts = [
        f"{task} {info['errors']}/{info['count']} errors"
        for category in CATEGORIES
        for task, info in scores["categories"][category].get("not_measured", {}).items()
    ]
    return f"{len(parts)} tasks not measured ({'; '.join(parts)})"


def _statuses(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def _status_section(doc: Doc, scores: dict[str, Any]) -> None:
    statuses = {
        task: t["statuses"]
        for c in CATEGORIES
        for group in ("tasks", "not_measured")
        for task, t in scores["categories"][c].get(group, {}).items()
        if t["statuses"]
    }
    if not statuses:
        return
    doc.heading("How episodes and items ended")
    doc.para(
        "Env episodes end with AgentBench's statuses (completed, agent_invalid_action, "
        "task_limit_reached = round limit, agent_context_limit, task_error); general items with "
        "correct / wrong / no_answer, passed / failed / timed_out (HumanEval), rated (MT-Bench), "
        "request_error / context_limit."
    )
    doc.image("statuses.png", plots.status_bars(statuses), "status breakdown")


def _notes_section(doc: Doc, scores: dict[str, Any]) -> None:
    notes = []
    for category in CATEGORIES:
        c = scores["categories"][category]
        notes += [f"{task} ({category}): no weight: {why}" for task, why in c["unweighted"].items()]
    matches = scores["reference"]["match_notes"]
    if not notes and not matches:
        return
    doc.heading("Comparability with the paper")
    doc.bullets(notes)
    if matches:
        doc.table(["task", "how it matches the paper's"], [[t, n] for t, n in matches.items()])


def _samples_section(
    doc: Doc,
    env_rows: list[Trajectory],
    general_results: dict[str, list[dict[str, Any]]],
    per_task: int,
) -> None:
    if per_task == 0 or not (env_rows or general_results):
        return
    doc.heading("Sample trajectories")
    seen: dict[str, int] = {}
    for row in sorted(env_rows, key=lambda r: r.id):
        if seen.get(row.task, 0) >= per_task:
            continue
        seen[row.task] = seen.get(row.task, 0) + 1
        doc.heading(f"{row.id}: reward {row.reward:.2f}, status `{row.status.value}`", 3)
        for turn in _episode_turns(list(row.conversations))[-6:]:
            doc.code(_shown(turn["value"]), f"**{turn['from']}**:")
    for results in general_results.values():
        for result in results[:per_task]:
            doc.heading(
                f"{result['id']}: score {fmt(result.get('score'), 2)}, status `{result['status']}`",
                3,
            )
            doc.code(_shown(str(result.get("question", ""))), "**question**:")
            doc.code(_shown(str(result.get("reply", ""))), "**reply**:")
            facts = [
                f"{k}: {result[k]}"
                for k in ("extracted", "gold", "error")
                if result.get(k) is not None
            ]
            for turn in result.get("turns") or []:
                facts.append(f"judge rating: {turn.get('rating')}")
            doc.bullets(facts)


def _episode_turns(conversations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The turns after the instruction and demonstration: the problem onwards."""
    last_demo = max((i for i, t in enumerate(conversations) if t["loss"] is False), default=-1)
    return conversations[last_demo + 1 :]


def _shown(value: str, limit: int = 600) -> str:
    if not value.strip():
        return f"(blank: {value[:40]!r})"
    return value if len(value) < limit else value[:limit] + " …"
