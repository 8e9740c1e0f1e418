"""The HF policy's prefix cache: the radix tree alone (sharing, LRU eviction), and greedy
outputs with the cache equal to those of the plain path (``generate`` prefilling each
prompt whole) over turns, families, batch sizes and a budget that forces evictions."""

from __future__ import annotations

import pytest
import torch

from agentray.envs.registry import make_env
from agentray.policies.hf import HFPolicy
from agentray.policies.prefix_cache import PrefixCache
from agentray.policies.registry import HFConfig, make_policy
from agentray.types import GenerationParams

PARAMS = GenerationParams(max_new_tokens=6)


def _kv(ids: list[int], layers: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fake keys/values that encode each position's token id (values: its negation)."""
    k = torch.tensor(ids, dtype=torch.float32).view(1, 1, -1, 1)
    return [(k + layer, -k - layer) for layer in range(layers)]


def test_tree_shares_prefixes_and_returns_their_keys_values():
    cache = PrefixCache(max_tokens=100)
    cache.insert([1, 2, 3, 4, 5], _kv([1, 2, 3, 4, 5]))
    cache.insert([1, 2, 3, 9], _kv([1, 2, 3, 9]))  # splits the first after [1, 2, 3]
    assert cache.tokens == 6  # [1, 2, 3] held once, then [4, 5] and [9]
    n, kv = cache.match([1, 2, 3, 9, 7])
    assert n == 4 and kv is not None
    assert torch.equal(kv[1][0].flatten(), torch.tensor([2.0, 3, 4, 10]))
    assert torch.equal(kv[1][1].flatten(), -torch.tensor([2.0, 3, 4, 10]))
    n, kv = cache.match([1, 2, 3, 4])  # a prefix of a cached prompt
    assert n == 4 and torch.equal(kv[0][0].flatten(), torch.tensor([1.0, 2, 3, 4]))
    assert cache.match([2, 1]) == (0, None)


def test_tree_evicts_least_recently_used_leaves_down_to_its_budget():
    cache = PrefixCache(max_tokens=8)
    cache.insert([1, 2, 3, 4], _kv([1, 2, 3, 4]))
    cache.insert([1, 2, 5, 6], _kv([1, 2, 5, 6]))
    cache.match([1, 2, 3, 4])  # [3, 4] is now used more recently than [5, 6]
    cache.insert([7, 8, 9], _kv([7, 8, 9]))  # 9 positions: one leaf must go
    assert cache.tokens == 7
    assert cache.match([1, 2, 5, 6])[0] == 2
    assert cache.match([1, 2, 3, 4])[0] == 4
    assert cache.match([7, 8, 9])[0] == 3
    cache.insert([10] * 20, _kv([10] * 20))  # larger than the budget: nothing else stays
    assert cache.tokens <= 8
    cache.clear()
    assert cache.tokens == 0 and cache.match([1, 2])[0] == 0


@pytest.fixture(scope="module")
def policies(prompt_sensitive_model_dir) -> tuple[HFPolicy, HFPolicy]:
    """(cached, plain): the same model with the prefix cache and without."""
    cached = make_policy(HFConfig(model=prompt_sensitive_model_dir, max_batch_size=8))
    plain = HFPolicy(prompt_sensitive_model_dir, prefix_cache=False)
    assert isinstance(cached, HFPolicy) and cached.prefix_cache is not None
    return cached, plain


def _prompts(family: str, n: int, start: int = 0) -> list:
    env = make_env(family)
    return [env.prompt(task) for task in env.tasks("train")[start : start + n]]


def _plain(plain: HFPolicy, conversations: list) -> list[list[int]]:
    """Each conversation alone, ``generate`` prefilling its whole prompt."""
    return [plain.generate_sync([c], PARAMS)[0].token_ids for c in conversations]


def _next_turns(conversations: list, completions: list) -> list:
    return [
        [*c, {"role": "assistant", "content": done.text}, {"role": "user", "content": f"ok {i}"}]
        for i, (c, done) in enumerate(zip(conversations, completions, strict=True))
    ]


def test_cached_turns_equal_the_plain_path_and_count_hits(policies):
    cached, plain = policies
    cached.reset_prefix_cache()
    before = cached.stats()
    # two families (two openings), prompts of different lengths, batched, three turns
    conversations = _prompts("db", 3) + _prompts("os", 2)
    for turn in range(3):
        out = cached.generate_sync(conversations, PARAMS)
        assert [c.token_ids for c in out] == _plain(plain, conversations), f"turn {turn}"
        conversations = _next_turns(conversations, out)
    # one at a time: a new episode of each family, then its next turn
    singles = _prompts("db", 1, start=10) + _prompts("os", 1, start=10)
    for conversation in singles:
        first = cached.generate_sync([conversation], PARAMS)
        [second_turn] = _next_turns([conversation], first)
        second = cached.generate_sync([second_turn], PARAMS)
        assert [first[0].token_ids, second[0].token_ids] == _plain(
            plain, [conversation, second_turn]
        )
    stats = cached.stats()
    hits = stats["prefix_cache_hits"] - before["prefix_cache_hits"]
    misses = stats["prefix_cache_misses"] - before["prefix_cache_misses"]
    assert misses == 2  # each family's first prompt; every later one reused its opening
    assert hits == 5 * 3 + 4 - 2
    reused = stats["prefix_cache_hit_tokens"] - before["prefix_cache_hit_tokens"]
    computed = stats["prefill_tokens"] - before["prefill_tokens"]
    prompt = stats["prompt_tokens"] - before["prompt_tokens"]
    assert reused + computed == prompt and reused > 0.8 * prompt
    assert 0 < stats["prefix_cache_tokens"] <= cached.prefix_cache.max_tokens


def test_a_tiny_budget_evicts_and_keeps_outputs(prompt_sensitive_model_dir, policies):
    _, plain = policies
    small = HFPolicy(prompt_sensitive_model_dir, prefix_cache_tokens=700)
    conversations = _prompts("db", 2) + _prompts("os", 2)  # two ~600-token openings
    expected = _plain(plain, conversations)
    for turn in range(2):
        out = small.generate_sync(conversations[turn::2], PARAMS)
        assert [c.token_ids for c in out] == expected[turn::2]
        assert small.stats()["prefix_cache_tokens"] <= 700
    alone = [small.generate_sync([c], PARAMS)[0].token_ids for c in reversed(conversations)]
    assert alone == expected[::-1]
    assert small.stats()["prefix_cache_tokens"] <= 700
    assert small.stats()["prefix_cache_hits"] > 0
