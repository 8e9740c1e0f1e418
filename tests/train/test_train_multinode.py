"""Training on a two-node Ray cluster on this machine (`ray start --head` + a second
`ray start --address ...`): two ZeRO-3 workers, one per node, through the train job."""

from __future__ import annotations

import json

import pytest
import yaml
from ray_cluster import run_job
from test_train import write_fixture_shards

pytestmark = pytest.mark.slow


def test_two_training_workers_on_two_nodes(two_node_cluster, tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    address, nodes, env = two_node_cluster
    run_dir = tmp_path / "run"
    write_fixture_shards(tiny_model_dir, run_dir / "process" / "train")  # 48 rows
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(run_dir),
                "model": tiny_model_dir,
                "train": {
                    "num_workers": 2,
                    "placement_strategy": "STRICT_SPREAD",  # one worker per node
                    "zero_stage": 3,
                    "micro_batch_size": 4,
                    "max_steps": 4,
                    "lr": 3.0e-3,
                    "max_seq_len": 256,
                },
            }
        )
    )
    run_job("train", config, address, env, timeout=400)
    manifest = json.loads((run_dir / "train" / "manifest.json").read_text())
    counts = manifest["counts"]
    assert sorted(counts["worker_nodes"]) == sorted(nodes), counts["worker_nodes"]
    assert counts["steps"] == 4
    model = AutoModelForCausalLM.from_pretrained(run_dir / "train" / "model")
    assert model.config.vocab_size > 0
