"""An interrupted or partly failed evaluation resumed (``agentray eval --resume``): the
episodes that ended in task_error while the endpoint was down are run again, the others
are kept, and the scores count every task once."""

from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from agentray import storage
from agentray.cli import app
from agentray.collect import read_trajectories
from agentray.eval.config import EvalConfig
from agentray.eval.run import run_eval
from agentray.testing.expert_endpoint import ExpertEndpoint

pytestmark = pytest.mark.slow

FAMILY = {"db": {"n_train": 2, "n_test": 8}}


def _config(base_url: str) -> EvalConfig:
    return EvalConfig(
        families=["db"],
        max_tasks_per_family=8,
        policy={"model": "expert", "base_url": base_url, "max_retries": 0},
        rollout={"max_in_flight": 8, "num_env_pools": 1, "envs_per_pool": 8, "metrics": False},
        general={"suites": []},
    )


def _rows_per_id(out: str) -> Counter:
    """Rows of each id in the folder's shards, counted row by row."""
    return Counter(pq.read_table(out, columns=["id"]).column("id").to_pylist())


def test_a_resumed_eval_retries_the_episodes_that_failed(ray_local, tmp_path):
    run_dir = str(tmp_path / "run")
    out = storage.join(run_dir, "eval", "trajectories")
    outage = {"outage_after": 2, "outage_requests": 2}
    with ExpertEndpoint(families=["db"], family_configs=FAMILY, **outage) as ep:
        first = run_eval(_config(ep.base_url), run_dir, progress=False, envs=FAMILY)
        db = first["categories"]["held_in"]["tasks"]["db"]
        assert db["statuses"] == {"completed": 6, "task_error": 2} and db["score"] == 75.0
        failed = {r.id for r in read_trajectories(out) if r.status == "task_error"}

        config = tmp_path / "config.yaml"
        eval_section = _config(ep.base_url).model_dump(mode="json", exclude_defaults=True)
        config.write_text(
            yaml.safe_dump({"run_dir": run_dir, "envs": FAMILY, "eval": eval_section})
        )
        result = CliRunner().invoke(app, ["eval", "--resume", str(config)])
        assert result.exit_code == 0, result.output
    resumed = json.loads(result.stdout)
    db = resumed["categories"]["held_in"]["tasks"]["db"]
    assert db["count"] == 8 and db["statuses"] == {"completed": 8} and db["score"] == 100.0
    records = read_trajectories(out)
    assert {r.id: r.attempt for r in records} == {r.id: 2 if r.id in failed else 1 for r in records}
    assert _rows_per_id(out) == Counter({r.id: 2 if r.id in failed else 1 for r in records})
