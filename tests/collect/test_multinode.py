"""Collection on a two-node Ray cluster on this machine: `ray start --head` plus a second
`ray start --address ...` node; the EnvPool actors land on both nodes and the run completes."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml
from ray_cluster import run_job

from agentray.collect.sink import read_trajectories

pytestmark = pytest.mark.slow


def test_env_pools_spread_over_two_nodes_and_the_run_completes(two_node_cluster, tmp_path, row_ids):
    address, nodes, env = two_node_cluster
    run_dir = tmp_path / "run"
    config = tmp_path / "collect.yaml"
    n_tasks = 24
    config.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(run_dir),
                "envs": {"db": {"n_train": n_tasks, "n_test": 2}},
                "collect": {
                    "families": ["db"],
                    "policy": {"backend": "expert"},
                    "rollout": {
                        "num_env_pools": 2,
                        "envs_per_pool": 8,
                        "env_pool_cpus": 0.5,
                        "policy_actor_cpus": 0.5,
                        "max_in_flight": 16,
                        "flush_every": 8,
                    },
                },
            }
        )
    )
    run_job("collect", config, address, env, timeout=240)
    counts = json.loads((run_dir / "collect" / "manifest.json").read_text())["counts"]
    assert sorted(set(counts["env_pool_nodes"])) == sorted(nodes), counts["env_pool_nodes"]
    out = str(run_dir / "collect" / "trajectories")
    assert row_ids(out) == Counter(f"db_{i}" for i in range(n_tasks))  # each once
    rows = read_trajectories(out)
    assert all(r.status == "completed" for r in rows)
    assert counts["families"]["db"]["count"] == n_tasks
