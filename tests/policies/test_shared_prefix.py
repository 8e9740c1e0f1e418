"""Shared-prefix decoding (agentray.policies.shared_prefix): how a batch's rows are grouped,
and greedy tokens of a batch decoded from a SharedPrefixCache equal to those of each
conversation alone and of the padded StaticCache path."""

from __future__ import annotations

import pytest
import torch

from agentray.envs.registry import make_env
from agentray.model.chat import left_pad
from agentray.policies.hf import MIN_SHARED_PREFIX, HFPolicy
from agentray.policies.shared_prefix import SharedPrefixCache, group_rows
from agentray.types import GenerationParams


def test_rows_sharing_a_long_opening_form_one_group_and_others_stand_alone():
    opening = list(range(100, 400))
    prompts = [
        opening + [1, 2, 3],
        opening + [1, 2, 4, 5],
        opening + [7] * 40,
        list(range(100, 110)) + [9] * 300,  # shares only 10 tokens: below min_shared
        [5, 6],
    ]
    groups = group_rows(prompts, new_tokens=16, min_shared=16)
    assert groups == [(0, 3, 300), (3, 1, 309), (4, 1, 1)]


def test_a_short_shared_opening_is_not_worth_padding_a_short_tail_to_a_long_one():
    # 20 shared tokens, then 2,000 and 10: together, the short row's tail is padded to 2,000
    prompts = [list(range(20)) + [1000] * 2000, list(range(20)) + [2000] * 10]
    assert group_rows(prompts, new_tokens=16, min_shared=16) == [(0, 1, 2019), (1, 1, 29)]
    equal_tails = [list(range(20)) + [1000 + k] * 2000 for k in range(3)]  # no padding
    assert group_rows(equal_tails, new_tokens=16, min_shared=16) == [(0, 3, 20)]


def _conversations() -> list[list[dict]]:
    """Three families' prompts (a group each), one later turn, two short chats (alone)."""
    out = []
    for family in ("db", "kg", "os"):
        env = make_env(family, {"n_train": 4, "n_test": 1, "seed": 5})
        out += [env.prompt(task) for task in env.tasks("train")[:4]]
    out.append(
        [*out[0], {"role": "assistant", "content": "Act: ls"}, {"role": "user", "content": "a b"}]
    )
    out += [[{"role": "user", "content": "hi " * k}] for k in (3, 40)]
    return out


@pytest.fixture(scope="module")
def policies(prompt_sensitive_model_dir) -> tuple[HFPolicy, HFPolicy]:
    """(shared prefix, padded StaticCache), no prefix cache."""
    shared = HFPolicy(prompt_sensitive_model_dir, prefix_cache=False)
    from agentray.policies.registry import HFConfig, make_policy

    off = HFConfig(model=prompt_sensitive_model_dir, prefix_cache=False, shared_prefix=False)
    padded = make_policy(off)  # the config's switch reaches the policy
    assert shared.shared_prefix and not padded.shared_prefix
    return shared, padded


def test_shared_prefix_batch_equals_one_at_a_time_and_the_padded_path(policies):
    shared, padded = policies
    conversations = _conversations()
    prompts = sorted(shared.encode(c) for c in conversations)
    groups = group_rows(prompts, 12, MIN_SHARED_PREFIX)
    assert len(groups) >= 4 and max(n for _, n, _ in groups) >= 4  # families share, chats don't
    params = GenerationParams(max_new_tokens=12)
    batched = shared.generate_sync(conversations, params)
    alone = [shared.generate_sync([c], params)[0] for c in conversations]
    static = padded.generate_sync(conversations, params)

    assert [c.token_ids for c in batched] == [c.token_ids for c in alone]
    assert [c.token_ids for c in batched] == [c.token_ids for c in static]
    assert len({tuple(c.token_ids) for c in batched}) > len(conversations) // 2


def test_a_cache_allocated_too_small_grows_and_keeps_the_tokens(policies):
    shared, _ = policies
    prompts = sorted(shared.encode(c) for c in _conversations())
    ids, mask = left_pad(prompts, shared.pad_token_id)
    params = GenerationParams(max_new_tokens=9)
    with torch.inference_mode():
        expected = shared._model_generate(ids, mask, params, shared._prefilled_cache(prompts, 9))
        rows = shared._prefill_rows(prompts)
        assert rows is not None
        groups = group_rows(prompts, params.max_new_tokens, MIN_SHARED_PREFIX)
        cache = SharedPrefixCache(prompts, rows, groups, capacity=1)  # 9 columns are written
        first = cache.layers[0].groups[0]
        allocated = first.keys.shape[2]
        grown = shared._model_generate(ids, mask, params, cache)
    assert first.keys.shape[2] > allocated and first.length == allocated - 1 + 9
    assert torch.equal(grown, expected)
