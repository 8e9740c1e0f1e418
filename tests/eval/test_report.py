"""The eval stage end to end: env families through the rollout engine (real Ray) and general
suites, against a stand-in model over real HTTP; scores.json with the paper's Overall,
report.md / report.html with their plots, and `agentray eval --compare`."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentray import storage
from agentray.cli import app
from agentray.collect.config import RolloutConfig
from agentray.envs.sandbox import bwrap_available
from agentray.eval.config import EvalConfig
from agentray.eval.general.config import GeneralConfig
from agentray.eval.overall import load_reference
from agentray.eval.run import run_eval
from agentray.testing.benchmark_endpoint import BenchmarkEndpoint

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not bwrap_available(), reason="bubblewrap cannot run here"),
]

HELD_IN, HELD_OUT = ["db", "mind2web"], ["kg"]  # kg stands in for a held-out family
FAMILIES = HELD_IN + HELD_OUT
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def eval_config(base_url: str, model: str) -> EvalConfig:
    def served(name: str) -> dict:
        return {"backend": "openai", "model": name, "base_url": base_url, "max_retries": 0}

    return EvalConfig(
        families=HELD_IN,
        held_out=HELD_OUT,
        max_tasks_per_family=2,
        policy=served(model),
        rollout=RolloutConfig(max_in_flight=4, num_env_pools=1, envs_per_pool=4, metrics=False),
        general={
            "max_items": 3,
            "mt_bench": {"judge": served("judge"), "max_items": 2},
        },
        sample_trajectories=1,
    )


@pytest.fixture(scope="module")
def two_runs(ray_local, tmp_path_factory):
    """The same stand-in served as a good model ("gold") and a bad one ("wrong")."""
    cfg = eval_config("http://unused", "gold")
    root = tmp_path_factory.mktemp("eval")
    with BenchmarkEndpoint(cfg.general, families=FAMILIES, judge_rating=7) as ep:
        runs = {}
        for model in ("wrong", "gold"):
            scores = run_eval(eval_config(ep.base_url, model), root / model, progress=False)
            runs[model] = (root / model, scores)
    return runs


def test_scores_have_categories_and_the_papers_overall(two_runs):
    run_dir, scores = two_runs["gold"]
    assert json.loads((run_dir / "eval" / "scores.json").read_text()) == scores
    categories = scores["categories"]
    held_in, held_out, general = (categories[c] for c in ("held_in", "held_out", "general"))
    assert list(held_in["tasks"]) == HELD_IN and list(held_out["tasks"]) == HELD_OUT
    for task in [*held_in["tasks"].values(), *held_out["tasks"].values()]:
        # the expert behind "gold" solves every episode
        assert task["count"] == 2 and task["score"] == 100.0
        assert task["statuses"] == {"completed": 2}
    assert {t: general["tasks"][t]["score"] for t in general["tasks"]} == {
        "mmlu": 100.0,
        "humaneval": 100.0,
        "gsm_symbolic": 100.0,
        "mt_bench": 7.0,
    }
    reference = load_reference()
    expected = sum(
        100.0 * w for t, w in reference.weights("held_in").items() if t in HELD_IN
    ) / len(HELD_IN)
    assert held_in["overall"] == pytest.approx(expected)
    assert scores["overall"]["held_in"] == held_in["overall"]
    assert held_in["reference_tasks_not_run"] == ["alfworld", "webshop", "kg", "os"]
    # a task the reference file has no score for gets no weight, and says why
    assert held_out["weights"] == {} and held_out["overall"] is None
    assert held_out["unweighted"] == {"kg": "the reference file has no held_out task 'kg'"}
    assert general["reference_task"]["gsm_symbolic"] == "gsm8k"
    assert scores["reference"]["match_notes"]["humaneval"].startswith("the same 164")

    _, bad = two_runs["wrong"]
    bad_in = bad["categories"]["held_in"]
    assert bad["overall"]["held_in"] == 0.0
    assert bad_in["tasks"]["db"]["statuses"] == {"agent_invalid_action": 2}
    # kg lets the agent retry an unparseable reply until its round limit
    bad_kg = bad["categories"]["held_out"]["tasks"]["kg"]
    assert bad_kg["statuses"] == {"task_limit_reached": 2}
    assert bad["categories"]["general"]["tasks"]["mmlu"]["statuses"] == {"wrong": 3}
    # what a model learns first, per family: its replies' action format
    for task in [*held_in["tasks"].values(), *held_out["tasks"].values()]:
        assert task["well_formed_replies"] == 1.0 and task["invalid_action_episodes"] == 0.0
    assert bad_in["tasks"]["db"]["well_formed_replies"] == 0.0
    assert bad_in["tasks"]["db"]["invalid_action_episodes"] == 1.0
    assert bad_kg["well_formed_replies"] == 0.0 and bad_kg["invalid_action_episodes"] == 0.0
    manifest = json.loads((run_dir / "eval" / "manifest.json").read_text())
    assert manifest["outputs"]["overall"] == scores["overall"]
    assert manifest["outputs"]["judge_stats"]["completions"] == 4  # 2 questions x 2 turns


def test_report_md_and_self_contained_html_with_plots(two_runs):
    run_dir, scores = two_runs["wrong"]
    eval_dir = run_dir / "eval"
    markdown = (eval_dir / "report.md").read_text()
    for name in ("overall.png", "tasks.png", "statuses.png"):
        assert f"](plots/{name})" in markdown
        assert (eval_dir / "plots" / name).read_bytes().startswith(PNG_MAGIC)
    assert "agent_invalid_action: 2" in markdown and "task_limit_reached: 2" in markdown
    assert "| mmlu | accuracy (%) | 3 | 0.0 |" in markdown
    page = (eval_dir / "report.html").read_text()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3
    assert all(base64.b64decode(data).startswith(PNG_MAGIC) for data in images)
    assert 'src="plots/' not in page  # nothing to fetch beside the page
    assert "db_" in page and "mt_bench_" in page  # sample episodes and items


def test_compare_puts_two_runs_side_by_side(two_runs, tmp_path):
    wrong_dir, _ = two_runs["wrong"]
    gold_dir, _ = two_runs["gold"]
    out = tmp_path / "cmp"
    result = CliRunner().invoke(
        app, ["eval", "--compare", str(wrong_dir), str(gold_dir), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    comparison = json.loads((out / "compare.json").read_text())
    assert comparison["labels"] == ["wrong", "gold"]
    db = comparison["categories"]["held_in"]["tasks"]["db"]
    assert db == {"a": 0.0, "b": 100.0, "delta": 100.0}
    mmlu = comparison["categories"]["general"]["tasks"]["mmlu"]
    assert mmlu["delta"] == 100.0
    overall = comparison["categories"]["held_in"]["overall"]
    assert overall["a"] == 0.0 and overall["delta"] == pytest.approx(overall["b"])
    page = (out / "compare.html").read_text()
    assert len(re.findall(r"data:image/png;base64,", page)) == 2
    assert "| db | 0.0 | 100.0 | +100.0 |" in (out / "compare.md").read_text()

    missing = CliRunner().invoke(app, ["eval", "--compare", str(tmp_path), str(gold_dir)])
    assert missing.exit_code == 2 and "no eval/scores.json" in missing.output


GENERAL_ONLY = {"suites": ["mmlu", "gsm_symbolic"], "max_items": 3}
EVAL_FILES = {
    "eval/general/gsm_symbolic.jsonl",
    "eval/general/mmlu.jsonl",
    "eval/manifest.json",
    "eval/plots/overall.png",
    "eval/plots/statuses.png",
    "eval/plots/tasks.png",
    "eval/report.html",
    "eval/report.md",
    "eval/scores.json",
}
COMPARE_FILES = {
    "eval/compare/compare.html",
    "eval/compare/compare.json",
    "eval/compare/compare.md",
    "eval/compare/plots/overall.png",
    "eval/compare/plots/tasks.png",
}


def stored(location: str) -> set[str]:
    return {f.removeprefix(location + "/") for f in storage.list_files(location)}


def test_eval_and_compare_write_every_output_at_the_run_location(run_root):
    """The general suites only (no env families): the run dirs may be local or a bucket."""
    runs = {model: storage.join(run_root, model) for model in ("wrong", "gold")}
    with BenchmarkEndpoint(GeneralConfig(**GENERAL_ONLY)) as ep:
        for model, run in runs.items():
            served = {"backend": "openai", "model": model, "base_url": ep.base_url}
            cfg = EvalConfig(families=[], policy=served, general=GENERAL_ONLY)
            scores = run_eval(cfg, run, progress=False)
    gold = runs["gold"]
    assert stored(gold) == EVAL_FILES
    assert storage.read_json(storage.join(gold, "eval", "scores.json")) == scores
    assert scores["categories"]["general"]["tasks"]["mmlu"]["score"] == 100.0
    manifest = storage.read_json(storage.join(gold, "eval", "manifest.json"))
    assert manifest["outputs"]["report"] == storage.join(gold, "eval", "report.md")
    markdown = storage.read_text(storage.join(gold, "eval", "report.md"))
    assert "| mmlu | accuracy (%) | 3 | 100.0 |" in markdown
    png = storage.read_bytes(storage.join(gold, "eval", "plots", "tasks.png"))
    assert png.startswith(PNG_MAGIC)

    result = CliRunner().invoke(app, ["eval", "--compare", runs["wrong"], gold])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["json"] == storage.join(
        gold, "eval", "compare", "compare.json"
    )
    assert stored(gold) == EVAL_FILES | COMPARE_FILES
    comparison = storage.read_json(storage.join(gold, "eval", "compare", "compare.json"))
    assert comparison["labels"] == ["wrong", "gold"]
    assert comparison["categories"]["general"]["tasks"]["mmlu"]["delta"] == 100.0
    assert list(Path.cwd().iterdir()) == []
