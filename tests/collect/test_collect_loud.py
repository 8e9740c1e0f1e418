"""Collect ends loudly: a run whose episodes mostly end in task_error exits 1 with a FAILED
line (its outputs and manifest written, status failed), each error printed as it happens
(rate-limited); the expert knows every family of the run, and one it cannot play fails at
load. Against the expert endpoint over real HTTP."""

from __future__ import annotations

import json
import re
import time

import pytest
import yaml
from typer.testing import CliRunner

from agentray import storage
from agentray.cli import app
from agentray.collect import PolicyCannotPlay, read_trajectories, run_collect
from agentray.collect.config import CollectConfig, RolloutConfig
from agentray.policies.registry import ExpertConfig
from agentray.testing.expert_endpoint import ExpertEndpoint
from agentray.testing.expertless_env import NAME as EXPERTLESS

ROLLOUT = {"max_in_flight": 4, "num_env_pools": 1, "envs_per_pool": 4, "metrics": False}
SMALL = {"db": {"n_train": 3, "n_test": 1}, "kg": {"n_train": 3, "n_test": 1}}


def _teacher(url: str) -> dict:
    return {"backend": "openai", "model": "expert", "base_url": url, "max_retries": 0}


@pytest.mark.slow
def test_a_collection_whose_episodes_mostly_fail_exits_1_with_a_failed_line(ray_local, tmp_path):
    run_dir = tmp_path / "run"
    # the endpoint knows db only: every kg conversation gets a 400, every episode task_error
    with ExpertEndpoint(families=["db"], family_configs=SMALL) as endpoint:
        config = {
            "run_dir": str(run_dir),
            "envs": SMALL,
            "collect": {
                "families": ["kg"],
                "policy": _teacher(endpoint.base_url),
                "rollout": ROLLOUT,
            },
        }
        path = tmp_path / "collect.yaml"
        path.write_text(yaml.safe_dump(config))
        started = time.perf_counter()
        result = CliRunner().invoke(app, ["collect", str(path)])
        seconds = time.perf_counter() - started
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    out = storage.join(str(run_dir), "collect", "trajectories")
    assert re.fullmatch(
        r"collect FAILED: 3 of 3 episodes ended in task_error \(more than max_error_fraction "
        r"0\.5\); most common error \(3x\): BadRequestError: .*the expert knows no task.*; "
        rf"outputs and manifest in {re.escape(out)}",
        lines[-1],
    ), lines[-1]
    # each error was printed as it happened, at most one line a second; none went uncounted
    shown = [line for line in lines if re.match(r"collect: task_error kg_\d+: ", line)]
    hidden = sum(int(n) for line in lines for n in re.findall(r"\+(\d+) more", line))
    assert 1 <= len(shown) <= 1 + seconds and len(shown) + hidden == 3, lines
    # the summary still printed, the outputs and the manifest still written
    summary = json.loads(result.stdout)
    assert summary["families"]["kg"]["statuses"] == {"task_error": 3}
    rows = read_trajectories(out)
    assert sorted(r.id for r in rows) == ["kg_0", "kg_1", "kg_2"]
    assert all(r.status == "task_error" and "knows no task" in r.error for r in rows)
    manifest = storage.read_json(storage.join(str(run_dir), "collect", "manifest.json"))
    assert manifest["status"] == "failed" and manifest["failure"]["errors"] == 3


@pytest.mark.slow
def test_the_default_expert_endpoint_serves_every_family_of_the_run(ray_local, tmp_path):
    """No ``families`` given: the endpoint answers every family that can run here (it used
    to answer only db and kg, and collecting any other ended every episode as task_error)."""
    envs = {"alfworld": {"n_train": 2, "n_test": 1}}
    with ExpertEndpoint(family_configs=envs) as endpoint:
        cfg = CollectConfig(
            families=["alfworld"],
            policy=_teacher(endpoint.base_url),
            rollout=RolloutConfig(**ROLLOUT),
        )
        summary = run_collect(cfg, str(tmp_path), progress=False, envs=envs)
    assert summary["families"]["alfworld"]["statuses"] == {"completed": 2}
    rows = read_trajectories(storage.join(str(tmp_path), "collect", "trajectories"))
    assert [r.reward for r in rows] == [1.0, 1.0] and rows[0].policy["backend"] == "openai"


def test_the_expert_fails_at_load_on_a_family_it_cannot_play(tmp_path):
    cfg = CollectConfig(families=[EXPERTLESS], max_tasks_per_family=2, policy=ExpertConfig())
    with pytest.raises(PolicyCannotPlay) as failed:
        run_collect(cfg, str(tmp_path), progress=False)
    assert str(failed.value).startswith(
        f"the expert policy cannot play family {EXPERTLESS!r}: expert_actions("
    )
    assert "NotImplementedError: this family has no scripted expert" in str(failed.value)
    assert not (tmp_path / "collect").exists()  # nothing ran
