"""The rollout engine collecting with the vLLM policy on CPU: a real Ray PolicyActor hosts
``backend: vllm``; its episodes match, token for token, the same episodes played by
``backend: hf`` (greedy, float32)."""

from __future__ import annotations

import asyncio

import pytest
from cpu_vllm import vllm_config

from agentray.collect.config import RolloutConfig
from agentray.collect.engine import RolloutEngine, load_tasks
from agentray.collect.sink import ParquetSink, read_trajectories
from agentray.policies.registry import HFConfig, PolicyConfig

pytestmark = pytest.mark.vllm

FAMILIES = {"db": {"n_train": 2, "n_test": 4}, "kg": {"n_train": 2, "n_test": 4}}
PARAMS = {"max_new_tokens": 24}


def _collect(policy: PolicyConfig, out) -> tuple[dict, dict]:
    rollout = RolloutConfig(max_in_flight=8, num_env_pools=1, envs_per_pool=8, flush_every=8)
    engine = RolloutEngine(rollout, policy, FAMILIES)
    tasks = load_tasks(list(FAMILIES), "test", FAMILIES)
    try:
        summary = asyncio.run(engine.run(tasks, ParquetSink(out), progress=False))
    finally:
        engine.shutdown()
    records = {r.id: r for r in read_trajectories(out)}
    assert sorted(records) == sorted(t.id for t in tasks)
    return records, summary


def test_vllm_policy_collects_the_episodes_hf_collects(
    ray_local, prompt_sensitive_model_dir, tmp_path
):
    vllm = vllm_config(prompt_sensitive_model_dir, params=PARAMS)
    hf = HFConfig(model=prompt_sensitive_model_dir, params=PARAMS)
    ours, ours_summary = _collect(vllm, tmp_path / "vllm")
    theirs, theirs_summary = _collect(hf, tmp_path / "hf")

    assert {i: r.conversations for i, r in ours.items()} == {
        i: r.conversations for i, r in theirs.items()
    }
    assert {i: (r.status, r.reward, r.turns) for i, r in ours.items()} == {
        i: (r.status, r.reward, r.turns) for i, r in theirs.items()
    }
    agent_turns = [
        t["value"]
        for r in ours.values()
        for t in r.conversations
        if t["from"] == "gpt" and t["loss"] is not False
    ]
    assert len(set(agent_turns)) > 1  # the answers depend on the prompt
    for family in FAMILIES:
        tokens = ours_summary["families"][family]["tokens"]  # counted from vLLM's token ids
        assert tokens == theirs_summary["families"][family]["tokens"]
        assert tokens["completion_tokens"] > 0 and tokens["prompt_tokens"] > 0
