"""Training on a two-node Ray cluster on this machine (`ray start --head` + a second
`ray start --address ...`): two ZeRO-3 workers, one per node, through the train job."""

from __future__ import annotations

import json

import pytest
import yaml
from ray_cluster import run_job
from test_train import LOSS_ATOL, mean_loss, tokenized_rows, write_fixture_shards

pytestmark = pytest.mark.slow


def test_two_training_workers_on_two_nodes(two_node_cluster, tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    address, nodes, env = two_node_cluster
    run_dir = tmp_path / "run"
    n_rows = write_fixture_shards(tiny_model_dir, run_dir / "process" / "train")
    workers, micro_batch, epochs = 2, 24, 4  # every step sees all 48 rows
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run_dir": str(run_dir),
                "model": tiny_model_dir,
                "train": {
                    "num_workers": workers,
                    "placement_strategy": "STRICT_SPREAD",  # one worker per node
                    "zero_stage": 3,
                    "micro_batch_size": micro_batch,
                    "epochs": epochs,
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
    assert counts["steps"] == n_rows // (workers * micro_batch) * epochs == 4
    history = [
        json.loads(x) for x in (run_dir / "train" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [(r["step"], r["sequences"]) for r in history] == [(s, n_rows) for s in (1, 2, 3, 4)]

    # The weights gathered from the two nodes' ZeRO-3 partitions are the trained ones: every
    # tensor moved, and their loss on the 48 rows, computed here, is the final_loss the
    # workers logged after the last step (step 1's loss is the initial weights' on them).
    examples = tokenized_rows(tiny_model_dir)
    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    trained = AutoModelForCausalLM.from_pretrained(run_dir / "train" / "model").eval()
    before, after = initial.state_dict(), trained.state_dict()
    assert after.keys() == before.keys()
    assert [k for k in before if before[k].equal(after[k])] == []
    assert history[0]["loss"] == pytest.approx(mean_loss(initial, examples), rel=0, abs=LOSS_ATOL)
    assert counts["final_loss"] == history[-1]["final_loss"]
    assert mean_loss(trained, examples) == pytest.approx(counts["final_loss"], rel=0, abs=LOSS_ATOL)
