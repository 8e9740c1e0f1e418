"""OpenAIPolicy against the expert endpoint over real HTTP: retries, Retry-After, timeouts,
rate limits and the accounting, checked against the endpoint's own counters, with each
client (lean: pooled aiohttp; sdk: the openai package)."""

from __future__ import annotations

import asyncio
import time

import pytest

from agentray.envs.registry import make_env
from agentray.policies.openai import OpenAIPolicy, TokenBucket
from agentray.policies.openai_lean import LeanChatClient, parse_completion
from agentray.policies.registry import OpenAIConfig, make_policy
from agentray.testing.expert_endpoint import ExpertEndpoint
from agentray.types import Completion, GenerationParams

FAMILY_CONFIGS = {"db": {"n_train": 12, "n_test": 2}}
ENV = make_env("db", FAMILY_CONFIGS["db"])
TASKS = ENV.tasks("train")
CONVERSATIONS = [ENV.prompt(t) for t in TASKS]
FIRST_ACTIONS = [ENV.expert_actions(t)[0] for t in TASKS]
HANG_GUARD_S = 60
CLIENTS = ["lean", "sdk"]


@pytest.fixture(params=CLIENTS)
def client(request) -> str:
    return request.param


@pytest.fixture
def endpoint():
    started: list[ExpertEndpoint] = []

    def start(**knobs) -> ExpertEndpoint:
        started.append(
            ExpertEndpoint(families=["db"], family_configs=FAMILY_CONFIGS, **knobs).start()
        )
        return started[-1]

    yield start
    for ep in started:
        ep.stop()


def run_policy(
    ep: ExpertEndpoint, conversations, params: GenerationParams | None = None, **policy_kwargs
) -> tuple[list[Completion], dict, float]:
    """(completions, policy stats, elapsed s); fails rather than hangs."""

    async def go():
        policy = OpenAIPolicy("expert", base_url=ep.base_url, **policy_kwargs)
        try:
            t0 = time.perf_counter()
            out = await asyncio.wait_for(
                policy.generate(conversations, params or GenerationParams()), HANG_GUARD_S
            )
            return out, policy.stats(), time.perf_counter() - t0
        finally:
            await policy.aclose()

    return asyncio.run(go())


def test_injected_429_and_500_are_retried_until_success_and_counted(endpoint, client):
    ep = endpoint(error_rate=0.5, error_codes=[429, 500], retry_after_s=0, seed=3)
    out, stats, _ = run_policy(
        ep,
        CONVERSATIONS,
        client=client,
        max_retries=12,
        retry_backoff_s=0.01,
        price_per_1m_input=30.0,
        price_per_1m_output=60.0,
    )
    assert [c.text for c in out] == FIRST_ACTIONS
    server = ep.stats()
    assert server["errors_injected"] >= 3  # the retries were really exercised
    assert stats["retries"] == server["errors_injected"]
    assert stats["rate_limited"] == server["errors_by_status"].get("429", 0)
    assert stats["server_errors"] == server["errors_by_status"].get("500", 0)
    assert stats["requests"] == server["requests"] == len(CONVERSATIONS) + stats["retries"]
    assert stats["completions"] == server["completions"] == len(CONVERSATIONS)
    assert stats["errors"] == 0
    assert stats["prompt_tokens"] == server["prompt_tokens"] == sum(c.prompt_tokens for c in out)
    assert stats["completion_tokens"] == server["completion_tokens"]
    expected_cost = (server["prompt_tokens"] * 30 + server["completion_tokens"] * 60) / 1e6
    assert stats["cost_usd"] == pytest.approx(expected_cost, abs=1e-6) and expected_cost > 0


def test_retry_after_is_honoured(endpoint, client):
    ep = endpoint(error_rate=1.0, error_codes=[429], retry_after_s=1.2)
    # the backoff alone would wait ~10 ms: only Retry-After explains a >= 1.2 s wait
    (completion,), stats, elapsed = run_policy(
        ep, CONVERSATIONS[:1], max_retries=1, retry_backoff_s=0.01, client=client
    )
    assert elapsed >= 1.2 and stats["backoff_wait_s"] >= 1.2
    assert completion.finish_reason == "error"
    assert "RateLimitError" in completion.error and "after 2 attempts" in completion.error
    assert stats["rate_limited"] == 2 and stats["retries"] == 1 and stats["errors"] == 1
    assert ep.stats()["requests"] == 2


def test_stalls_time_out_then_give_up_with_an_error_never_hang(endpoint, client):
    ep = endpoint(stall_rate=1.0)
    out, stats, elapsed = run_policy(
        ep, CONVERSATIONS[:2], timeout_s=0.3, max_retries=2, retry_backoff_s=0.01, client=client
    )
    assert [c.finish_reason for c in out] == ["error", "error"]
    assert all("Timeout" in c.error and "after 3 attempts" in c.error for c in out)
    assert stats["timeouts"] == 6 and stats["retries"] == 4 and stats["errors"] == 2
    assert elapsed >= 3 * 0.3
    assert ep.stats()["stalls"] == 6


def test_mixed_failures_every_conversation_ends_with_an_answer_or_error(endpoint, client):
    ep = endpoint(error_rate=0.3, stall_rate=0.15, retry_after_s=0, latency_ms=20, seed=11)
    out, stats, _ = run_policy(
        ep, CONVERSATIONS, timeout_s=1.0, max_retries=1, retry_backoff_s=0.01, client=client
    )
    assert len(out) == len(CONVERSATIONS)
    assert {c.finish_reason for c in out} <= {"stop", "error"}
    answered = [c for c in out if c.finish_reason == "stop"]
    assert stats["completions"] == len(answered) and stats["errors"] == len(out) - len(answered)
    server = ep.stats()
    assert stats["timeouts"] == server["stalls"] and stats["requests"] == server["requests"]
    for completion, action in zip(out, FIRST_ACTIONS, strict=True):
        assert completion.text == (action if completion.finish_reason == "stop" else "")


def test_requests_per_minute_spaces_requests(endpoint, client):
    ep = endpoint()
    out, stats, elapsed = run_policy(ep, CONVERSATIONS[:5], requests_per_minute=120, client=client)
    assert [c.text for c in out] == FIRST_ACTIONS[:5]
    assert elapsed >= 4 * 0.5 - 0.05  # 5 requests at one per 0.5 s: 4 gaps
    assert stats["limiter_wait_s"] >= 4 * 0.5 * 0.9


def test_tokens_per_minute_limits_token_throughput(endpoint, client):
    ep = endpoint()
    params = GenerationParams(max_new_tokens=32)
    rate = 500.0  # tokens per second; the bucket holds one second's worth
    out, stats, elapsed = run_policy(
        ep, CONVERSATIONS[:4], params=params, tokens_per_minute=rate * 60, client=client
    )
    assert all(c.finish_reason == "stop" for c in out)
    used = sorted(c.prompt_tokens + c.completion_tokens for c in out)
    # before the last request may go, every other one has taken at least its usage
    assert sum(used[:-1]) / rate - 1.0 > 1.0
    assert elapsed >= sum(used[:-1]) / rate - 1.0
    assert stats["total_tokens"] == sum(used)


def test_context_overflow_is_a_context_limit_not_retried(endpoint, client):
    ep = endpoint(context_limit_tokens=20)
    (completion,), stats, _ = run_policy(ep, CONVERSATIONS[:1], max_retries=3, client=client)
    assert completion.finish_reason == "context_limit"
    assert stats["context_limits"] == 1 and stats["retries"] == 0 and stats["requests"] == 1


def test_token_bucket_rate_and_debt():
    async def go() -> float:
        bucket = TokenBucket(rate_per_s=20.0, capacity=2.0)
        t0 = time.perf_counter()
        await bucket.acquire(2)  # the initial burst
        await bucket.acquire(5)  # bigger than the bucket: waits for a full one, leaves a debt
        await bucket.acquire(1)
        return time.perf_counter() - t0

    # 2 (refill for the big one) + 3 (its debt) + 1 units at 20/s
    assert asyncio.run(go()) >= 6 / 20 - 0.01


def test_config_fields_reach_the_policy(client):
    cfg = OpenAIConfig(
        client=client,
        model="gpt-4",
        base_url="http://localhost:1/v1",
        requests_per_minute=500,
        tokens_per_minute=30000,
        retry_backoff_s=0.5,
        retry_backoff_max_s=8,
        price_per_1m_input=30,
        price_per_1m_output=60,
        max_retries=5,
        timeout_s=12,
    )
    policy = make_policy(cfg)
    assert isinstance(policy, OpenAIPolicy)
    assert policy._request_bucket.rate == pytest.approx(500 / 60)
    assert policy._token_bucket.rate == pytest.approx(500.0)
    assert (policy.retry_backoff_s, policy.retry_backoff_max_s) == (0.5, 8)
    assert policy.prices == (30, 60) and policy.max_retries == 5 and policy.timeout_s == 12
    if client == "sdk":
        assert policy.client.max_retries == 0  # the policy's own loop retries
    else:
        assert isinstance(policy.client, LeanChatClient)
        assert policy.client.connections == cfg.max_concurrency
    assert policy.client_kind == client and OpenAIConfig(model="m").client == "lean"
    assert set(policy.stats()) >= {"requests", "retries", "errors", "cost_usd", "total_tokens"}


def test_without_aiohttp_the_httpx_transport_is_sharded(endpoint, monkeypatch):
    import openai

    class MissingAioHttp:  # what openai installs when aiohttp is absent
        def __init__(self, **_kwargs):
            raise RuntimeError("To use the aiohttp client you must install aiohttp")

    monkeypatch.setattr(openai, "DefaultAioHttpClient", MissingAioHttp)
    ep = endpoint(latency_ms=50)
    policy = OpenAIPolicy("expert", base_url=ep.base_url, max_concurrency=40, client="sdk")
    assert len(policy.clients) == 3 and policy._slots.qsize() == 40
    out, stats, _ = run_policy(ep, CONVERSATIONS, max_concurrency=40, client="sdk")
    assert [c.text for c in out] == FIRST_ACTIONS and stats["requests"] == len(CONVERSATIONS)


@pytest.mark.parametrize("status", [400, 404, 409, 503])
def test_failed_requests_read_the_same_on_both_clients(endpoint, status):
    ep = endpoint(error_rate=1.0, error_codes=[status], retry_after_s=0)
    seen = {}
    for client in CLIENTS:
        (completion,), stats, _ = run_policy(
            ep, CONVERSATIONS[:1], max_retries=1, retry_backoff_s=0.01, client=client
        )
        seen[client] = (completion.finish_reason, completion.error, stats["requests"])
    assert seen["lean"] == seen["sdk"]
    reason, error, attempts = seen["lean"]
    assert reason == "error" and f"Error code: {status} - injected {status}" in error
    assert attempts == (2 if status in (409, 503) else 1)  # 400 and 404 are not retried


def test_lean_client_outage_is_retried_with_backoff_until_the_endpoint_recovers(endpoint):
    ep = endpoint(outage_after=2, outage_requests=5, latency_ms=5)
    out, stats, _ = run_policy(
        ep, CONVERSATIONS, max_concurrency=3, max_retries=6, retry_backoff_s=0.05
    )
    assert [c.text for c in out] == FIRST_ACTIONS
    server = ep.stats()
    assert server["outage_errors"] == 5 == stats["server_errors"] == stats["retries"]
    assert stats["backoff_wait_s"] >= 5 * 0.05 * 0.5  # each retry waited its jittered step
    assert stats["requests"] == server["requests"] == len(CONVERSATIONS) + 5


def test_lean_client_keeps_its_connections_alive_within_the_limit(endpoint):
    ep = endpoint(latency_ms=20)

    async def go():
        policy = OpenAIPolicy("expert", base_url=ep.base_url, max_concurrency=4)
        try:
            for _ in range(3):
                out = await policy.generate(CONVERSATIONS, GenerationParams())
                assert [c.text for c in out] == FIRST_ACTIONS
            return ep.open_connections(), policy.stats()
        finally:
            await policy.aclose()

    open_after, stats = asyncio.run(asyncio.wait_for(go(), HANG_GUARD_S))
    # kept alive (a closed connection would leave none) and never more than the limit
    assert 1 <= open_after <= 4 and ep.stats()["max_in_flight"] <= 4
    assert stats["requests"] == 3 * len(CONVERSATIONS) and stats["errors"] == 0


def test_lean_client_survives_a_server_restart_on_its_pooled_connections(endpoint):
    first = endpoint(latency_ms=5)
    port = first.port

    async def go():
        policy = OpenAIPolicy("expert", base_url=first.base_url, max_concurrency=4)
        try:
            before = await policy.generate(CONVERSATIONS[:4], GenerationParams())
            await asyncio.to_thread(first.stop)  # the pooled connections die with it
            second = await asyncio.to_thread(lambda: endpoint(port=port, latency_ms=5))
            after = await policy.generate(CONVERSATIONS, GenerationParams())
            return before, after, policy.stats(), second
        finally:
            await policy.aclose()

    before, after, stats, second = asyncio.run(asyncio.wait_for(go(), HANG_GUARD_S))
    assert [c.text for c in before + after] == FIRST_ACTIONS[:4] + FIRST_ACTIONS
    assert stats["errors"] == 0
    assert stats["requests"] == 4 + second.stats()["requests"]
    assert second.stats()["completions"] == len(CONVERSATIONS)


def test_lean_parse_reads_only_what_the_engine_uses_and_flags_malformed_bodies():
    body = (
        b'{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},'
        b'"finish_reason":"length","logprobs":{"unknown":[1,2]}}],'
        b'"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9},"extra":{}}'
    )
    completion, used = parse_completion(body)
    assert (completion.text, completion.finish_reason, used) == ("hi", "length", 9)
    assert (completion.prompt_tokens, completion.completion_tokens) == (7, 2)
    no_usage, used = parse_completion(b'{"choices":[{"message":{"content":null}}]}')
    assert (no_usage.text, no_usage.finish_reason, used) == ("", "stop", None)
    for bad in (b"<html>busy</html>", b'{"choices":[]}', b'{"choices":"x"}', b"[1]"):
        completion, used = parse_completion(bad)
        assert completion.finish_reason == "error" and completion.error and used is None


def test_lean_client_refuses_a_proxy_it_would_bypass(monkeypatch):
    monkeypatch.setenv("AGENTRAY_TEST_KEY", "sk-test")
    monkeypatch.setenv("https_proxy", "http://proxy.internal:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    remote = {"base_url": "https://api.example.com/v1", "api_key_env": "AGENTRAY_TEST_KEY"}
    with pytest.raises(ValueError, match="https_proxy.*client: sdk"):
        OpenAIPolicy("gpt-4", **remote)
    assert OpenAIPolicy("gpt-4", client="sdk", **remote).client.api_key == "sk-test"


def test_a_remote_endpoint_needs_a_key_unless_declared_keyless(monkeypatch):
    from agentray.policies.openai import PLACEHOLDER_KEY, resolve_api_key

    monkeypatch.delenv("AGENTRAY_UNSET_KEY", raising=False)
    url = "http://10.0.0.5:8000/v1"  # a self-hosted server on another node
    with pytest.raises(ValueError, match="AGENTRAY_UNSET_KEY is not set.*10.0.0.5"):
        resolve_api_key("AGENTRAY_UNSET_KEY", url)
    assert resolve_api_key(None, url) == PLACEHOLDER_KEY
    assert OpenAIConfig(model="m", base_url=url, api_key_env=None).api_key_env is None
