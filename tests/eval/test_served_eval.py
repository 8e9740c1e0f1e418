"""`agentray eval` against `agentray serve`: the tiny model served by Ray Serve on the
session cluster, scored by the eval command in a process of its own over real HTTP (every
other eval test talks to a stand-in that answers from the gold data)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agentray.serve import ServeConfig, start_server, stop_server
from agentray.testing import free_port

pytestmark = pytest.mark.slow

SERVED_NAME = "tiny-served"  # not the default "agentray": the report must name this one
SUITES = ["mmlu", "humaneval", "gsm_symbolic"]  # MT-Bench needs a judge model
# statuses that mean the item or episode was not measured: the request or the task failed
NOT_MEASURED = {"task_error", "request_error", "context_limit"}


def _eval_config(run_dir: Path, base_url: str) -> dict:
    short = {"params": {"max_new_tokens": 16}}
    return {
        "run_dir": str(run_dir),
        "eval": {
            "families": ["db"],
            "max_tasks_per_family": 2,
            "policy": {
                "backend": "openai",
                "model": SERVED_NAME,
                "base_url": base_url,
                "max_retries": 0,
                "params": {"max_new_tokens": 16},
            },
            "rollout": {"max_in_flight": 2, "num_env_pools": 1, "envs_per_pool": 2},
            "general": {
                "suites": SUITES,
                "max_items": 2,
                "mmlu": short,
                "humaneval": short,
                "gsm_symbolic": short,
            },
        },
    }


def test_eval_command_scores_the_model_agentray_serve_serves(ray_local, tiny_model_dir, tmp_path):
    serve_cfg = ServeConfig(
        model=tiny_model_dir,
        app_name="agentray-served-eval",
        served_model_name=SERVED_NAME,
        port=free_port(),
        num_cpus=0.5,
    )
    config = tmp_path / "eval.yaml"
    run_dir = tmp_path / "run"
    base_url = start_server(serve_cfg)
    try:
        config.write_text(yaml.safe_dump(_eval_config(run_dir, base_url)))
        cluster = ray_local.get_runtime_context().gcs_address
        done = subprocess.run(
            [sys.executable, "-m", "agentray.cli", "--address", cluster, "eval", str(config)],
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        stop_server(serve_cfg.app_name, shutdown=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"agentray eval: outputs in {run_dir / 'eval'}" in done.stderr

    scores = json.loads((run_dir / "eval" / "scores.json").read_text())
    assert (scores["model"], scores["base_url"]) == (SERVED_NAME, base_url)
    categories = scores["categories"]
    db = categories["held_in"]["tasks"]["db"]
    assert db["count"] == 2 and sum(db["statuses"].values()) == 2
    assert not NOT_MEASURED & db["statuses"].keys(), db["statuses"]
    assert isinstance(db["score"], int | float)
    general = categories["general"]["tasks"]
    assert sorted(general) == sorted(SUITES)
    for suite, task in general.items():
        assert sum(task["statuses"].values()) == 2, (suite, task["statuses"])
        assert not NOT_MEASURED & task["statuses"].keys(), (suite, task["statuses"])
        assert isinstance(task["score"], int | float), suite

    report = (run_dir / "eval" / "report.md").read_text()
    assert f"Model `{SERVED_NAME}` at `{base_url}`" in report
