"""A throwaway two-node Ray cluster on this machine, for the multi-node tests (see
``agentray.testing.cluster``: own temp dirs and ports, torn down by killing its process
groups, never `ray stop`)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentray.testing.cluster import LocalCluster

REPO = Path(__file__).resolve().parents[1]


def run_job(stage: str, config: Path, address: str, env: dict[str, str], timeout: float):
    """``python -m jobs <stage> --config ...`` as a Ray job driver of the cluster at
    ``address``; asserts it exits 0 (its output tail in the message) and returns it."""
    result = subprocess.run(
        [sys.executable, "-m", "jobs", stage, "--config", str(config)],
        cwd=REPO,
        env={**env, "RAY_ADDRESS": address},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture()
def two_node_cluster() -> Iterator[tuple[str, list[str], dict[str, str]]]:
    """(GCS address, node ids, env) of a head with 1 CPU and a second node with 2 CPUs."""
    with LocalCluster() as cluster:
        cluster.start_head(num_cpus=1)
        # the second node joins while the head is still starting: `ray start` retries
        cluster.add_node(num_cpus=2)
        nodes = cluster.wait_for_nodes(2)
        yield cluster.address, nodes, cluster.env
