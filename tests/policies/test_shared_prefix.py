"""Shared-prefix decoding (agentray.policies.shared_prefix): how a batch's rows are grouped,
and greedy tokens of a batch decoded from a SharedPrefixCache equal to those of each
conversation alone and of the padded StaticCache path."""

from __future__ import annotations

import pytest
import torch

from agentray.envs.registry import make_env
from agentray.model.chat import left_pad
from agentray.model.compat import cache_kwarg, decodes_itself
from agentray.policies.hf import MIN_SHARED_PREFIX, HFPolicy
from agentray.policies.prefill import PrefillCache
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


def _generate_sequences(policy: HFPolicy, prompts: list[list[int]], params: GenerationParams):
    """(``generate`` with the shared-prefix decoding loop, ``generate``'s own loop), each
    from a fresh shared cache."""
    ids, mask = left_pad(prompts, policy.pad_token_id)
    with torch.inference_mode():
        lean = policy._model_generate(ids, mask, params, policy._prefilled_cache(prompts, 9))
        cache = policy._prefilled_cache(prompts, 9)
        kwargs = {"max_new_tokens": params.max_new_tokens, "do_sample": False, "top_k": None}
        kwargs |= {"temperature": None, "top_p": None, "disable_compile": True}
        with cache.active():
            plain = policy.model.generate(
                input_ids=ids,
                attention_mask=mask,
                pad_token_id=policy.pad_token_id,
                eos_token_id=policy.eos_token_ids,
                **{cache_kwarg(policy.model): cache},
                **kwargs,
            )
    return lean, plain


def test_the_decode_loop_equals_generate_where_rows_end_early(policies):
    """Greedy decoding from a SharedPrefixCache runs ``greedy_decode`` (this transformers
    takes it as ``custom_generate``); with an eos that ends some rows mid-way, they stop
    and are padded exactly as ``generate``'s own loop does it."""
    shared, _ = policies
    assert decodes_itself(shared.model)
    prompts = sorted(shared.encode(c) for c in _conversations())
    params = GenerationParams(max_new_tokens=9)
    lean, plain = _generate_sequences(shared, prompts, params)
    assert torch.equal(lean, plain)
    width = len(max(prompts, key=len))
    generated = lean[:, width:]
    token = int(generated[0, 3])  # some rows produce it before their last step, not all
    saved = shared.eos_token_ids
    shared.eos_token_ids = [token]
    try:
        lean, plain = _generate_sequences(shared, prompts, params)
    finally:
        shared.eos_token_ids = saved
    ended = [(row[: params.max_new_tokens - 1] == token).any() for row in generated]
    assert any(ended) and not all(ended)
    assert torch.equal(lean, plain)
    assert (lean[0, width + 4 :] == shared.pad_token_id).all()  # padded after its eos


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_tails_prefilled_together_attend_as_each_row_alone(kv_heads):
    """PrefillCache: each row's new tokens against the shared prefix, the row's own cached
    past and its new tokens causally equal sdpa over that row's keys alone (also with
    grouped-query attention); padding queries stay finite."""
    torch.manual_seed(0)
    heads, dim, shared = 4, 16, 30
    pasts, news = [0, 5, 2], [7, 3, 7]
    kv = lambda n: (torch.randn(1, kv_heads, n, dim), torch.randn(1, kv_heads, n, dim))  # noqa: E731
    prefix = kv(shared)
    past_kv = [kv(n) for n in pasts]
    cache = PrefillCache([prefix], [[p] for p in past_kv], news)
    width = max(news)
    new_kv = kv(width * len(news))
    keys, values = (t.view(kv_heads, len(news), width, dim).transpose(0, 1) for t in new_kv)
    cache.layers[0].update(keys, values)
    query = torch.randn(len(news), heads, width, dim)
    got = cache.attend(0, query, None)
    assert got.shape == (len(news), width, heads, dim) and torch.isfinite(got).all()
    positions = cache.position_ids()
    for r, (past, new) in enumerate(zip(pasts, news, strict=True)):
        real = slice(width - new, width)
        assert positions[r, real].tolist() == list(range(shared + past, shared + past + new))
        row_keys = torch.cat([prefix[0], past_kv[r][0], keys[r : r + 1, :, real]], dim=2)
        row_values = torch.cat([prefix[1], past_kv[r][1], values[r : r + 1, :, real]], dim=2)
        k, v = (t.repeat_interleave(heads // kv_heads, 1) for t in (row_keys, row_values))
        causal = torch.ones(new, k.shape[2], dtype=torch.bool).tril(k.shape[2] - new)
        expected = torch.nn.functional.scaled_dot_product_attention(
            query[r : r + 1, :, real], k, v, causal
        )
        torch.testing.assert_close(got[r, real], expected[0].transpose(0, 1), atol=1e-5, rtol=1e-5)
