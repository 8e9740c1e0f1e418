"""The serve stage: one real Ray Serve app for the module, called with the stock openai client."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest
import requests
from pydantic import ValidationError

from agentray.policies.hf import HFPolicy
from agentray.policies.openai_policy import OpenAIPolicy
from agentray.serve import ServeConfig, run_serve, stop_server
from agentray.types import GenerationParams

pytestmark = pytest.mark.slow

MAX_TOKENS = 12


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(ray_local, prompt_sensitive_model_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    cfg = ServeConfig(
        model=prompt_sensitive_model_dir,
        app_name="agentray-test",
        port=free_port(),
        num_cpus=0.5,
        batch_wait_timeout_s=0.1,
        params=GenerationParams(max_new_tokens=MAX_TOKENS),
    )
    url = run_serve(cfg, tmp / "run", block=False)
    yield cfg, url, tmp / "run"
    stop_server(cfg.app_name, shutdown=True)


@pytest.fixture(scope="module")
def client(served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served[1], api_key="EMPTY", max_retries=0)


def ask(client: openai.OpenAI, prompt: str) -> str:
    response = client.chat.completions.create(
        model="agentray",
        messages=[{"role": "user", "content": prompt}],
        max_tokens=MAX_TOKENS,
        temperature=0,
    )
    return response.choices[0].message.content


def test_openai_client_chat_and_models(served, client):
    cfg, url, run_dir = served
    assert url == f"http://127.0.0.1:{cfg.port}/v1"
    response = client.chat.completions.create(
        model="agentray",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        max_tokens=5,
    )
    assert response.object == "chat.completion" and response.id.startswith("chatcmpl-")
    assert response.model == "agentray"
    choice = response.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason == "length"
    assert response.usage.completion_tokens == 5
    assert response.usage.total_tokens == response.usage.prompt_tokens + 5

    assert [m.id for m in client.models.list().data] == ["agentray"]
    assert requests.get(url.removesuffix("/v1") + "/health", timeout=10).json() == {"status": "ok"}
    manifest = json.loads((run_dir / "serve" / "manifest.json").read_text())
    assert manifest["stage"] == "serve" and manifest["outputs"]["url"] == url


@pytest.mark.parametrize(
    "body, param",
    [
        ({"model": "agentray"}, "messages"),
        ({"model": "agentray", "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        ({"model": "agentray", "messages": []}, "messages"),
        ({"model": "agentray", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        ({"model": "agentray", "messages": [{"role": "assistant", "content": "x"}]}, "messages"),
        (
            {
                "model": "agentray",
                "messages": [{"role": "user", "content": "x"}],
                "max_tokens": 10**6,
            },
            "messages",
        ),
    ],
)
def test_malformed_requests_get_openai_errors(served, body, param):
    response = requests.post(f"{served[1]}/chat/completions", json=body, timeout=30)
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert error["message"]


def test_unknown_model_is_404_for_the_openai_client(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "x"}])
    assert raised.value.code == "model_not_found" and raised.value.param == "model"


def test_concurrent_requests_are_batched_and_independent(served, client):
    stats_url = served[1].removesuffix("/v1") + "/stats"
    prompts = [f"question {i}: " + "why " * i for i in range(8)]
    alone = [ask(client, p) for p in prompts]
    before = requests.get(stats_url, timeout=10).json()

    barrier = threading.Barrier(len(prompts))

    def ask_together(prompt: str) -> str:
        barrier.wait()
        return ask(client, prompt)

    with ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(ask_together, prompts))
    after = requests.get(stats_url, timeout=10).json()

    assert together == alone
    assert len(set(alone)) > 1  # answers depend on the prompt, so a mix-up would show
    assert after["requests"] - before["requests"] == len(prompts)
    assert after["batches"] - before["batches"] < len(prompts)  # some requests shared a batch


def test_openai_policy_against_served_model(served, client):
    cfg, url, _ = served
    conversations = [
        [{"role": "user", "content": "list the tables"}],
        [
            {"role": "user", "content": "demo task"},
            {"role": "assistant", "content": "demo answer", "loss": False},
            {"role": "user", "content": "real task"},
        ],
    ]
    params = GenerationParams(max_new_tokens=MAX_TOKENS)
    policy = OpenAIPolicy("agentray", base_url=url, max_concurrency=2)

    async def run():
        try:
            return await policy.generate(conversations, params)
        finally:
            await policy.aclose()

    remote = asyncio.run(run())
    local = HFPolicy(cfg.model).generate_sync(conversations, params)
    assert [c.finish_reason for c in remote] == ["length", "length"]
    assert [c.text for c in remote] == [c.text for c in local]
    assert [c.completion_tokens for c in remote] == [MAX_TOKENS, MAX_TOKENS]
    assert [c.prompt_tokens for c in remote] == [c.prompt_tokens for c in local]


def test_serve_config_names_bad_fields():
    with pytest.raises(ValidationError, match="max_batch_size"):
        ServeConfig(max_batch_size=16, max_ongoing_requests=8)
    with pytest.raises(ValidationError, match="extra"):
        ServeConfig(replicas=2)
    assert ServeConfig(host="0.0.0.0", port=9000, route_prefix="/llm").base_url == (
        "http://127.0.0.1:9000/llm/v1"
    )


def test_context_overflow_through_the_server_is_a_context_limit(served):
    """AgentBench's agent_context_limit status, not an error, when the history outgrows the model."""
    _, url, _ = served
    policy = OpenAIPolicy("agentray", base_url=url, max_retries=0)
    too_long = GenerationParams(max_new_tokens=1_000_000)

    async def run():
        try:
            return await policy.generate([[{"role": "user", "content": "hi"}]], too_long)
        finally:
            await policy.aclose()

    [completion] = asyncio.run(run())
    assert completion.finish_reason == "context_limit"
    assert "context window" in completion.error
