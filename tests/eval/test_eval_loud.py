"""Eval ends loudly: tasks whose episodes or items mostly failed for infrastructure reasons
are "not measured" (never a score of 0) and left out of the Overall, and `agentray eval`
exits 1 with a FAILED line, its scores, report and manifest written. Against the expert
endpoint over real HTTP, which knows db but not kg nor MMLU (a 400 for each of those)."""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml
from typer.testing import CliRunner

from agentray import storage
from agentray.cli import app
from agentray.testing.expert_endpoint import ExpertEndpoint

pytestmark = pytest.mark.slow

SMALL = {"db": {"n_train": 1, "n_test": 2}, "kg": {"n_train": 1, "n_test": 2}}


@pytest.fixture(scope="module")
def failed_eval(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("loud-eval")
    with ExpertEndpoint(families=["db"], family_configs=SMALL) as endpoint:
        config = {
            "run_dir": str(root / "run"),
            "envs": SMALL,
            "eval": {
                "families": ["db"],
                "held_out": ["kg"],
                "policy": {"model": "expert", "base_url": endpoint.base_url, "max_retries": 0},
                "rollout": {"max_in_flight": 4, "num_env_pools": 1, "envs_per_pool": 4},
                "general": {"suites": ["mmlu"], "max_items": 2},
            },
        }
        path = root / "eval.yaml"
        path.write_text(yaml.safe_dump(config))
        started = time.perf_counter()
        result = CliRunner().invoke(app, ["eval", str(path)])
        seconds = time.perf_counter() - started
    return storage.join(str(root / "run"), "eval"), result, seconds


def test_eval_with_unmeasured_tasks_exits_1_with_one_failed_line(failed_eval):
    out, result, seconds = failed_eval
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert re.fullmatch(
        r"eval FAILED: 2 tasks not measured \(kg 2/2 errors; mmlu 2/2 errors\), left out of "
        r"the Overall; most common error \(4x\): BadRequestError: .*knows no task.*; "
        rf"report: {re.escape(storage.join(out, 'report.md'))}",
        lines[-1],
    ), lines[-1]
    # every error printed as it happened or counted in a "+N more" line
    shown = [line for line in lines if re.match(r"eval: (task_error kg|request_error mmlu)_", line)]
    hidden = sum(int(n) for line in lines for n in re.findall(r"\+(\d+) more", line))
    assert 1 <= len(shown) <= 2 + seconds and len(shown) + hidden == 4, lines
    assert json.loads(result.stdout)["status"] == "failed"
    manifest = storage.read_json(storage.join(out, "manifest.json"))
    assert manifest["status"] == "failed" and manifest["failure"]["errors"] == 4


def test_unmeasured_tasks_get_no_score_and_no_place_in_the_overall(failed_eval):
    out, _, _ = failed_eval
    scores = storage.read_json(storage.join(out, "scores.json"))
    held_in, held_out, general = (
        scores["categories"][c] for c in ("held_in", "held_out", "general")
    )
    assert held_in["tasks"]["db"]["score"] == 100.0 and held_in["not_measured"] == {}
    assert held_out["tasks"] == {} and general["tasks"] == {}
    for category, task in ((held_out, "kg"), (general, "mmlu")):
        info = category["not_measured"][task]
        assert info["errors"] == info["count"] == 2 and "knows no task" in info["first_error"]
        assert category["overall"] is None and task not in category["weights"]
    assert scores["overall"]["held_in"] is not None
    assert scores["overall"]["held_out"] is None and scores["overall"]["general"] is None


def test_the_report_says_not_measured_never_zero(failed_eval):
    out, _, _ = failed_eval
    report = storage.read_text(storage.join(out, "report.md"))
    assert "**FAILED**: 2 tasks not measured (kg 2/2 errors; mmlu 2/2 errors)." in report
    assert "The Overall leaves out the tasks that were not measured" in report
    assert "kg (held_out), mmlu (general)" in report
    for task in ("kg", "mmlu"):
        (row,) = [line for line in report.splitlines() if line.startswith(f"| {task} |")]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2] == "2" and cells[3].startswith("not measured (2 errors: BadRequestError")
        assert "0.0" not in cells[3:7]
