"""The quickstart's closing table: the teacher (the scripted expert behind a real
OpenAI-compatible endpoint) and the base model (a local hf policy) on the tuned model's
eval tasks, side by side with the format metrics per family."""

from __future__ import annotations

import pytest

from agentray.config import validate_config
from agentray.quickstart import _eval_base, _eval_teacher, side_by_side, side_by_side_markdown

pytestmark = pytest.mark.slow

FAMILIES = ["db", "mind2web"]


def test_teacher_and_base_side_by_side(ray_local, tiny_model_dir, tmp_path):
    cfg = validate_config(
        {
            "run_dir": str(tmp_path),
            "model": tiny_model_dir,
            "envs": {"mind2web": {"n_shots": 1}},
            "eval": {
                "families": FAMILIES,
                "max_tasks_per_family": 2,
                "policy": {
                    "model": "m",
                    "base_url": "http://unused/v1",
                    "params": {"max_new_tokens": 8},
                },
                "rollout": {"max_in_flight": 4, "num_env_pools": 1, "metrics": False},
            },
        }
    )
    teacher = _eval_teacher(cfg, str(tmp_path / "teacher"))
    base = _eval_base(cfg, str(tmp_path / "base"))
    assert (tmp_path / "teacher" / "eval" / "scores.json").exists()
    assert teacher["categories"]["general"]["tasks"] == {}  # env families only
    # the tuned model's column: the base's scores stand in for it here
    rows = side_by_side({"teacher": teacher, "base": base, "tuned": base}, FAMILIES)
    assert [r["family"] for r in rows] == FAMILIES
    for row in rows:
        assert row["teacher_score"] == 100.0  # the eval path is right: the teacher solves all
        assert row["teacher_well_formed_replies"] == 1.0
        # an untrained model writes no well-formed action in 8 tokens
        assert row["base_score"] == 0.0 and row["base_well_formed_replies"] < 1.0
    train = {"steps": 3, "first_loss": 8.3, "last_loss": 6.71, "tokens_per_s": 5000.0}
    text = side_by_side_markdown(rows, {"collect": 1.0, "eval": 2.0}, train)
    assert "Training: 3 steps, loss 8.30 → 6.71 at 5,000 tokens/s" in text
    assert "| db | success rate (%) | 100.0 | 0.0 | 0.0 |" in text
    assert "collect 1, eval 2" in text


def test_the_teacher_is_reached_by_the_node_ip_so_other_nodes_reach_it(monkeypatch, tmp_path):
    """On a cluster the eval's policy actors run on other nodes: a loopback URL would point
    them at themselves. The endpoint answers at the node's IP, without a key."""
    import json
    import urllib.request
    from urllib.parse import urlparse

    from agentray import quickstart
    from agentray.policies.openai import LOCAL_HOSTS

    seen = {}

    def fake_eval(cfg, run, envs):
        seen["policy"] = cfg.policy
        with urllib.request.urlopen(f"{cfg.policy.base_url}/models", timeout=10) as reply:
            seen["models"] = json.load(reply)
        return {}

    monkeypatch.setattr(quickstart, "run_eval", fake_eval)
    cfg = validate_config({"run_dir": str(tmp_path), "eval": {"families": ["db"]}})
    _eval_teacher(cfg, str(tmp_path / "teacher"))
    assert urlparse(seen["policy"].base_url).hostname not in LOCAL_HOSTS
    assert seen["policy"].api_key_env is None
    assert seen["models"]["data"][0]["id"] == "expert"
