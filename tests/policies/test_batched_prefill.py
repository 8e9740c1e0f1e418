"""The HF policy's prefill with tails together (``agentray.policies.prefill``): the same
keys/values as prefilling each prompt alone, in fewer forward passes, over turns whose
rows have cached pasts of different lengths, a row that is all cached, and rows that
share nothing."""

from __future__ import annotations

import pytest
import torch

from agentray.envs.registry import make_env
from agentray.policies.hf import HFPolicy


def _prompts(family: str, n: int) -> list:
    env = make_env(family)
    return [env.prompt(task) for task in env.tasks("train")[:n]]


@pytest.fixture(scope="module")
def policies(prompt_sensitive_model_dir) -> tuple[HFPolicy, HFPolicy]:
    together = HFPolicy(prompt_sensitive_model_dir)
    alone = HFPolicy(prompt_sensitive_model_dir)
    alone.prefill.batched = False
    assert together.prefill.batched  # CPU, shared-prefix attention
    return together, alone


def _forwards(policy: HFPolicy) -> list[int]:
    """A list that grows by one at each forward pass of the policy's model."""
    calls: list[int] = []
    policy.model.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls


def test_tails_prefilled_together_equal_each_prompt_alone(policies):
    together, alone = policies
    calls = {policy: _forwards(policy) for policy in policies}
    conversations = _prompts("db", 4) + _prompts("kg", 3) + [[{"role": "user", "content": "hi"}]]
    repeated = together.encode(conversations[0])  # sent again at turn 2: all of it cached
    for policy in policies:
        policy.reset_prefix_cache()
    for turn in range(2):
        prompts = sorted(together.encode(c) for c in conversations)
        if turn:
            prompts.append(repeated)
        before = {policy: len(calls[policy]) for policy in policies}
        with torch.inference_mode():
            rows = {policy: policy._prefill_rows(prompts) for policy in policies}
        passes = {policy: len(calls[policy]) - before[policy] for policy in policies}
        assert passes[alone] == len(prompts) - turn  # the repeated prompt needs none
        assert passes[together] <= 5  # turn 1: 3 openings + 2 families' tails
        for prompt, got, expected in zip(prompts, rows[together], rows[alone], strict=True):
            for (k, v), (ek, ev) in zip(got, expected, strict=True):
                assert k.shape == ek.shape == (1, k.shape[1], len(prompt) - 1, k.shape[3])
                torch.testing.assert_close(k, ek, atol=1e-5, rtol=1e-4)
                torch.testing.assert_close(v, ev, atol=1e-5, rtol=1e-4)
        # next turn: each row's cached past is its own last prompt, of its own length
        conversations = [
            [
                *c,
                {"role": "assistant", "content": "Act: x" * (i + 1)},
                {"role": "user", "content": "ok"},
            ]
            for i, c in enumerate(conversations)
        ]
    stats = together.stats(), alone.stats()
    assert stats[0]["prefix_cache_hits"] > 0
    assert stats[0]["prefill_tokens"] <= 1.05 * stats[1]["prefill_tokens"]
