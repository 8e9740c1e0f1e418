"""The whole pipeline as a Ray job on a cluster whose nodes share no disk, with the run on
object storage: a real S3 server (SeaweedFS), a head, and a second node in its own mount
namespace with a private /tmp and home (agentray.testing.cluster)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agentray import storage
from agentray.testing import free_port
from agentray.testing.cluster import LocalCluster

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FAMILIES = ["db", "kg"]


def _small_pipeline(serve_port: int) -> dict:
    """The quickstart's loop, smaller: two families, a few tasks, one epoch."""
    return {
        "envs": {"db": {"n_train": 4, "n_test": 2}},
        "collect": {
            "families": FAMILIES,
            "max_tasks_per_family": 4,
            "rollout": {"num_env_pools": 2},
        },
        "process": {"max_general_records": 60, "max_seq_len": 1024, "packing": {"enabled": True}},
        "train": {"num_workers": 2, "epochs": 1, "max_seq_len": 1024, "micro_batch_size": 2},
        # the simulated nodes share one network: a proxy per node would race for the port
        "serve": {"port": serve_port, "proxy_location": "HeadOnly"},
        "eval": {
            "families": FAMILIES,
            "max_tasks_per_family": 2,
            "general": {"suites": ["gsm_symbolic"], "max_items": 2},
            # the pipeline points it at the model it serves
            "policy": {"backend": "openai", "model": "agentray", "params": {"max_new_tokens": 32}},
        },
    }


def _local_uri_folders(*roots: Path) -> list[Path]:
    """Local folders named after a URI scheme (``s3:``): a run that missed the storage."""
    return [p for root in roots if root.exists() for p in root.rglob("s3:")]


def test_the_pipeline_job_runs_on_a_node_that_shares_no_disk(s3_bucket, tmp_path):
    run = storage.join(s3_bucket, "runs", "pipeline")
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(_small_pipeline(free_port())))
    elsewhere = tmp_path / "elsewhere"  # the submitting shell is not in the checkout
    elsewhere.mkdir()
    with LocalCluster() as cluster:
        cluster.start_head(num_cpus=1, dashboard=True)
        cluster.add_node(num_cpus=3, isolated=True)
        cluster.wait_for_nodes(2)
        [isolated] = cluster.isolated_node_ids()
        cluster.wait_for_dashboard()
        submit = [str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard_url]
        submit += ["--working-dir", str(REPO), "--", "python", "-m", "jobs", "pipeline"]
        submit += ["--config", str(config), "--run-dir", run]
        result = subprocess.run(
            submit, cwd=elsewhere, env=cluster.env, capture_output=True, text=True, timeout=1200
        )
        said = result.stdout + result.stderr
        assert result.returncode == 0, said[-5000:]
        head_dirs = [Path(p) for p in cluster._dirs]
        assert _local_uri_folders(elsewhere, REPO, *head_dirs) == []
    assert f"agentray pipeline: outputs in {run}" in said

    stored = storage.list_files(run)
    for artifact in (
        "collect/manifest.json",
        "process/manifest.json",
        "train/manifest.json",
        "train/model/config.json",
        "eval/report.md",
    ):
        assert storage.join(run, artifact) in stored, f"{artifact} not in the bucket: {stored}"
    assert any(f.startswith(storage.join(run, "collect", "trajectories")) for f in stored)
    assert any(f.startswith(storage.join(run, "process", "train")) for f in stored)

    collect = storage.read_json(storage.join(run, "collect", "manifest.json"))["counts"]
    assert isolated in collect["env_pool_nodes_at_start"], collect["env_pool_nodes_at_start"]
    train = storage.read_json(storage.join(run, "train", "manifest.json"))
    assert isolated in train["counts"]["worker_nodes"], train["counts"]
