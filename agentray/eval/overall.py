"""The paper's Overall score per category (held-in, held-out, general).

AgentTuning weights each task by the inverse of the mean score that a set of reference
models reached on it, so that easy and hard tasks count alike:

    w_t = 1 / mean_{m in reference models} score_{m,t}
    Overall(category) = mean_{t in category} score_t * w_t

A score of 1.0 means "as good as the reference models on average". The reference scores
come from a JSON file; the default ships with the package: the paper's published per-task
numbers for eight models (``data/agenttuning_reference.json``, with which of our tasks match
which of theirs and how closely). Any file with the same ``reference_models`` / ``scores``
layout can replace it (``eval.reference_file``). Our tasks map to the file's through its
``task_map``, else by the env family's ``reference_name`` (``scienceworld`` -> ``sciworld``),
else by name; a task the file has no score for gets no weight and is listed as such.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agentray import storage
from agentray.envs.registry import reference_name

CATEGORIES = ("held_in", "held_out", "general")
Category = Literal["held_in", "held_out", "general"]
PACKAGED_REFERENCE = "agenttuning_reference.json"


class ReferenceError(ValueError):
    """A reference file that cannot be used; the message names the file and the field."""


class ReferenceScores(BaseModel):
    """Per-task scores of reference models (and optionally their published Overall)."""

    model_config = ConfigDict(extra="ignore")

    source: str = ""
    note: str = ""
    reference_models: list[str] = Field(min_length=1)
    scores: dict[Category, dict[str, dict[str, float]]]
    overall: dict[Category, dict[str, float]] = Field(default_factory=dict)
    task_map: dict[str, str] = Field(
        default_factory=dict, description="our task name -> the file's, where they differ"
    )
    match_notes: dict[str, str] = Field(
        default_factory=dict, description="our task name -> how closely it matches the file's"
    )

    @model_validator(mode="after")
    def _reference_models_scored(self) -> ReferenceScores:
        for category, tasks in self.scores.items():
            for task, by_model in tasks.items():
                missing = [m for m in self.reference_models if m not in by_model]
                if missing:
                    raise ValueError(
                        f"scores.{category}.{task}: no score for reference models {missing}"
                    )
        return self

    def weights(self, category: str) -> dict[str, float | None]:
        """The file's own tasks of ``category`` -> weight (None: reference mean is 0)."""
        return task_weights(self.scores.get(category, {}), self.reference_models)

    def reference_task(self, ours: str) -> str:
        return self.task_map.get(ours) or reference_name(ours)


def load_reference(path: str | Path | None = None) -> ReferenceScores:
    """The reference file at ``path`` (a path or URI), or the paper's numbers shipped with
    the package."""
    if path is None:
        text = (resources.files("agentray.eval") / "data" / PACKAGED_REFERENCE).read_text()
        where = f"agentray/eval/data/{PACKAGED_REFERENCE}"
    else:
        try:
            text = storage.read_text(path)
        except OSError as e:
            raise ReferenceError(f"reference file {path}: {e}") from None
        where = str(path)
    try:
        return ReferenceScores.model_validate(json.loads(text))
    except ValueError as e:  # JSON or validation
        detail = _errors(e) if isinstance(e, ValidationError) else str(e)
        raise ReferenceError(f"reference file {where}: {detail}") from None


def _errors(e: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
        for err in e.errors()
    )


def task_weights(
    scores: Mapping[str, Mapping[str, float]], reference_models: list[str]
) -> dict[str, float | None]:
    """task -> 1 / (mean score of the reference models); None where that mean is 0."""
    out: dict[str, float | None] = {}
    for task, by_model in scores.items():
        mean = sum(by_model[m] for m in reference_models) / len(reference_models)
        out[task] = 1.0 / mean if mean > 0 else None
    return out


def overall_score(scores: Mapping[str, float], weights: Mapping[str, float]) -> float | None:
    """Mean over ``scores``' tasks of score x weight (every task must have a weight)."""
    if not scores:
        return None
    return sum(score * weights[task] for task, score in scores.items()) / len(scores)


def published_overall(reference: ReferenceScores, category: str, model: str) -> float | None:
    """Overall of a model the file scored, recomputed from its per-task numbers."""
    tasks = reference.scores.get(category, {})
    weights = reference.weights(category)
    usable = {t: s[model] for t, s in tasks.items() if model in s and weights[t] is not None}
    return overall_score(usable, weights)


def category_overall(
    ours: Mapping[str, float | None], reference: ReferenceScores, category: str
) -> dict[str, Any]:
    """Overall of our task scores in ``category`` (on the reference file's scale), with which
    task got which weight, which got none and why, and which reference tasks were not run."""
    weights = reference.weights(category)
    reference_tasks = list(weights)
    weighted: dict[str, float] = {}
    used: dict[str, float] = {}
    matched: dict[str, str] = {}
    unweighted: dict[str, str] = {}
    for task, score in ours.items():
        theirs = reference.reference_task(task)
        if score is None:
            unweighted[task] = "no score (skipped or nothing rated)"
        elif theirs not in weights:
            unweighted[task] = f"the reference file has no {category} task {theirs!r}"
        elif weights[theirs] is None:
            unweighted[task] = f"the reference models' mean on {theirs!r} is 0"
        else:
            weighted[task] = score
            used[task] = weights[theirs]
            matched[task] = theirs
    overall = overall_score(weighted, used)
    return {
        "overall": overall,
        "weights": used,
        "contributions": {t: weighted[t] * used[t] for t in weighted},
        "reference_task": matched,
        "unweighted": unweighted,
        "reference_tasks_not_run": [t for t in reference_tasks if t not in matched.values()],
    }
