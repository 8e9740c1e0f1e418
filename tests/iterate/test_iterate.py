"""agentray iterate: two short rounds on the tiny model, resumed after a crash between
stages; agentray lineage over the result."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from agentray import storage
from agentray.cli import app
from agentray.collect import read_trajectories
from agentray.testing import free_port

pytestmark = pytest.mark.slow

FAMILY = "mind2web"


def _config(run_dir: Path) -> dict:
    """The quickstart's loop, smaller: Mind2Web, 4 train tasks, 2 eval tasks."""
    return {
        "run_dir": str(run_dir),
        "envs": {FAMILY: {"n_shots": 1}},
        "collect": {
            "families": [FAMILY],
            "max_tasks_per_family": 4,
            "rollout": {"num_env_pools": 1, "envs_per_pool": 8, "max_in_flight": 8},
        },
        "process": {
            "max_general_records": 40,
            "max_seq_len": 2048,
            "packing": {"enabled": True},
            "tokenize_workers": 1,
            # any finished episode of the untrained-ish model counts: the test is about the
            # loop and its lineage, not about the tiny model's skill
            "reward_thresholds": {FAMILY: 0.0},
            "check_actions": False,
            "keep_statuses": [
                "completed",
                "agent_invalid_action",
                "task_limit_reached",
                "agent_context_limit",
            ],
        },
        "train": {"num_workers": 1, "epochs": 1, "max_seq_len": 2048, "micro_batch_size": 2},
        "serve": {"port": free_port()},
        "eval": {
            "families": [FAMILY],
            "max_tasks_per_family": 2,
            "general": {"suites": ["gsm_symbolic"], "max_items": 2},
            "policy": {"backend": "openai", "model": "agentray", "params": {"max_new_tokens": 32}},
        },
        "iterate": {
            "samples_per_task": 2,
            "temperature": 1.0,
            "keep_per_task": 2,
            "prefer": "latest",
            "max_new_tokens": 32,
            "preference_pairs": True,
        },
    }


def _iterate(config: Path, rounds: int) -> dict:
    result = CliRunner().invoke(app, ["iterate", str(config), "--rounds", str(rounds)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout[result.stdout.rindex('{\n  "rounds"') :])


def _finished_at(path: Path) -> dict[str, str]:
    """Every stage manifest under ``path`` -> its finished_at and wall time."""
    return {
        str(m.parent.relative_to(path)): (lambda d: f"{d['finished_at']} {d['wall_s']}")(
            json.loads(m.read_text())
        )
        for m in sorted(path.rglob("manifest.json"))
    }


@pytest.fixture
def serve_shut_down_after(ray_local):
    """The rounds serve their models on this session's Ray; Serve keeps its first port, so
    it is shut down afterwards for the tests that serve on a port of their own."""
    yield
    from ray import serve

    serve.shutdown()


def test_two_rounds_resume_after_a_crash_and_trace_their_lineage(serve_shut_down_after, tmp_path):
    from agentray.collect import run_collect
    from agentray.config import load_config
    from agentray.iterate.run import explore_config

    run_dir = tmp_path / "run"
    config = tmp_path / "iterate.yaml"
    config.write_text(yaml.safe_dump(_config(run_dir)))

    first = _iterate(config, rounds=1)
    assert first["rounds"][0]["ran"] == ["collect", "process", "train", "eval"]
    round0 = _finished_at(run_dir / "round-0")

    # a crash in round 1 right after its first exploration: that collect finished, nothing else
    cfg = load_config(config)
    sample0 = str(run_dir / "round-1" / "explore" / "sample-0")
    run_collect(explore_config(cfg, 1, 0), sample0, envs=cfg.envs)
    explored0 = _finished_at(Path(sample0))

    second = _iterate(config, rounds=2)
    rounds = second["rounds"]
    assert rounds[0]["ran"] == []  # round 0 finished: nothing redone
    assert rounds[1]["ran"] == ["explore/sample-1", "merge", "pairs", "process", "train", "eval"]
    assert {k: v for k, v in _finished_at(run_dir / "round-0").items() if k != "."} == {
        k: v for k, v in round0.items() if k != "."
    }
    assert _finished_at(Path(sample0)) == explored0

    # round 1 explored with round 0's model; what it kept says so
    for j in (0, 1):
        records = read_trajectories(
            str(run_dir / "round-1" / "explore" / f"sample-{j}" / "collect" / "trajectories")
        )
        assert len(records) == 4
        assert {r.policy["round"] for r in records} == {0}
        assert {r.policy["model"] for r in records} == {
            str(run_dir / "round-0" / "train" / "model")
        }
    merged = read_trajectories(str(run_dir / "round-1" / "merge" / "trajectories"))
    explored_kept = [r for r in merged if r.policy.get("round") == 0]
    assert explored_kept, [r.policy for r in merged]
    assert all(r.policy["backend"] == "hf" for r in explored_kept)
    merge = storage.read_json(str(run_dir / "round-1" / "merge" / "manifest.json"))
    assert merge["counts"]["kept"] == len(merged) <= 4 * 2  # keep_per_task
    assert merge["counts"]["kept_by_source"]["round-0"] == len(explored_kept)
    process = storage.read_json(str(run_dir / "round-1" / "process" / "manifest.json"))
    assert process["inputs"]["trajectories"] == [
        str(run_dir / "round-1" / "merge" / "trajectories")
    ]
    assert process["versions"]["code"] != "unknown"

    # preference pairs of round 1's explorations, counted in its manifest and the round's
    pairs = storage.read_json(str(run_dir / "round-1" / "pairs" / "manifest.json"))["counts"]
    assert pairs["read"] == 8
    rows = pq.read_table(str(run_dir / "round-1" / "pairs" / "pairs.parquet")).to_pylist()
    assert len(rows) == pairs["pairs"]
    assert all(r["chosen"][0]["role"] == "assistant" for r in rows)
    round1 = storage.read_json(str(run_dir / "round-1" / "manifest.json"))
    assert round1["counts"]["preference_pairs"] == pairs

    # the report across rounds, written after the last round
    assert second["report"] == str(run_dir / "rounds.md")
    report = (run_dir / "rounds.md").read_text()
    assert "| task | round 0 | round 1 |" in report
    exploration = merge["counts"]["exploration"][FAMILY]
    assert f"| {FAMILY} | {exploration['passed']}/{exploration['episodes']} (" in report
    assert (run_dir / "plots" / "rounds_scores.png").is_file()

    # the model card and the lineage back to the teacher's collect run
    model = run_dir / "round-1" / "train" / "model"
    card = (model / "README.md").read_text()
    assert "## Data" in card and "## Recipe" in card and "## Scores" in card
    lineage = CliRunner().invoke(app, ["lineage", str(model)])
    assert lineage.exit_code == 0, lineage.output
    text = lineage.stdout
    for stage_dir in (
        "round-1/train",
        "round-1/process",
        "round-1/merge",
        "round-1/explore/sample-0/collect",
        "round-1/explore/sample-1/collect",
        "round-0/train",
        "round-0/process",
        "round-0/collect",
    ):
        assert f"{run_dir}/{stage_dir} " in text or text.rstrip().endswith(
            f"{run_dir}/{stage_dir}"
        ), (
            stage_dir,
            text,
        )
    assert "policy expert" in text and "round 0" in text


def test_lineage_of_a_folder_without_manifest_exits_2(tmp_path):
    result = CliRunner().invoke(app, ["lineage", str(tmp_path)])
    assert result.exit_code == 2
    assert "no manifest.json" in result.output
