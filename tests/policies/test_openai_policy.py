"""OpenAIPolicy against the expert endpoint over real HTTP: retries, Retry-After, timeouts,
rate limits and the accounting, checked against the endpoint's own counters."""

from __future__ import annotations

import asyncio
import time

import pytest

from agentray.envs.registry import make_env
from agentray.policies.openai import OpenAIPolicy, TokenBucket
from agentray.policies.registry import OpenAIConfig, make_policy
from agentray.testing.expert_endpoint import ExpertEndpoint
from agentray.types import Completion, GenerationParams

FAMILY_CONFIGS = {"db": {"n_train": 12, "n_test": 2}}
ENV = make_env("db", FAMILY_CONFIGS["db"])
TASKS = ENV.tasks("train")
CONVERSATIONS = [ENV.prompt(t) for t in TASKS]
FIRST_ACTIONS = [ENV.expert_actions(t)[0] for t in TASKS]
HANG_GUARD_S = 60


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


def test_injected_429_and_500_are_retried_until_success_and_counted(endpoint):
    ep = endpoint(error_rate=0.5, error_codes=[429, 500], retry_after_s=0, seed=3)
    out, stats, _ = run_policy(
        ep,
        CONVERSATIONS,
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


def test_retry_after_is_honoured(endpoint):
    ep = endpoint(error_rate=1.0, error_codes=[429], retry_after_s=1.2)
    # the backoff alone would wait ~10 ms: only Retry-After explains a >= 1.2 s wait
    (completion,), stats, elapsed = run_policy(
        ep, CONVERSATIONS[:1], max_retries=1, retry_backoff_s=0.01
    )
    assert elapsed >= 1.2 and stats["backoff_wait_s"] >= 1.2
    assert completion.finish_reason == "error"
    assert "RateLimitError" in completion.error and "after 2 attempts" in completion.error
    assert stats["rate_limited"] == 2 and stats["retries"] == 1 and stats["errors"] == 1
    assert ep.stats()["requests"] == 2


def test_stalls_time_out_then_give_up_with_an_error_never_hang(endpoint):
    ep = endpoint(stall_rate=1.0)
    out, stats, elapsed = run_policy(
        ep, CONVERSATIONS[:2], timeout_s=0.3, max_retries=2, retry_backoff_s=0.01
    )
    assert [c.finish_reason for c in out] == ["error", "error"]
    assert all("Timeout" in c.error and "after 3 attempts" in c.error for c in out)
    assert stats["timeouts"] == 6 and stats["retries"] == 4 and stats["errors"] == 2
    assert elapsed >= 3 * 0.3
    assert ep.stats()["stalls"] == 6


def test_mixed_failures_every_conversation_ends_with_an_answer_or_error(endpoint):
    ep = endpoint(error_rate=0.3, stall_rate=0.15, retry_after_s=0, latency_ms=20, seed=11)
    out, stats, _ = run_policy(
        ep, CONVERSATIONS, timeout_s=1.0, max_retries=1, retry_backoff_s=0.01
    )
    assert len(out) == len(CONVERSATIONS)
    assert {c.finish_reason for c in out} <= {"stop", "error"}
    answered = [c for c in out if c.finish_reason == "stop"]
    assert stats["completions"] == len(answered) and stats["errors"] == len(out) - len(answered)
    server = ep.stats()
    assert stats["timeouts"] == server["stalls"] and stats["requests"] == server["requests"]
    for completion, action in zip(out, FIRST_ACTIONS, strict=True):
        assert completion.text == (action if completion.finish_reason == "stop" else "")


def test_requests_per_minute_spaces_requests(endpoint):
    ep = endpoint()
    out, stats, elapsed = run_policy(ep, CONVERSATIONS[:5], requests_per_minute=120)
    assert [c.text for c in out] == FIRST_ACTIONS[:5]
    assert elapsed >= 4 * 0.5 - 0.05  # 5 requests at one per 0.5 s: 4 gaps
    assert stats["limiter_wait_s"] >= 4 * 0.5 * 0.9


def test_tokens_per_minute_limits_token_throughput(endpoint):
    ep = endpoint()
    params = GenerationParams(max_new_tokens=32)
    rate = 500.0  # tokens per second; the bucket holds one second's worth
    out, stats, elapsed = run_policy(
        ep, CONVERSATIONS[:4], params=params, tokens_per_minute=rate * 60
    )
    assert all(c.finish_reason == "stop" for c in out)
    used = sorted(c.prompt_tokens + c.completion_tokens for c in out)
    # before the last request may go, every other one has taken at least its usage
    assert sum(used[:-1]) / rate - 1.0 > 1.0
    assert elapsed >= sum(used[:-1]) / rate - 1.0
    assert stats["total_tokens"] == sum(used)


def test_context_overflow_is_a_context_limit_not_retried(endpoint):
    ep = endpoint(context_limit_tokens=20)
    (completion,), stats, _ = run_policy(ep, CONVERSATIONS[:1], max_retries=3)
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


def test_config_fields_reach_the_policy():
    cfg = OpenAIConfig(
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
    assert policy.client.max_retries == 0  # the policy's own loop retries
    assert set(policy.stats()) >= {"requests", "retries", "errors", "cost_usd", "total_tokens"}


def test_without_aiohttp_the_httpx_transport_is_sharded(endpoint, monkeypatch):
    import openai

    class MissingAioHttp:  # what openai installs when aiohttp is absent
        def __init__(self, **_kwargs):
            raise RuntimeError("To use the aiohttp client you must install aiohttp")

    monkeypatch.setattr(openai, "DefaultAioHttpClient", MissingAioHttp)
    ep = endpoint(latency_ms=50)
    policy = OpenAIPolicy("expert", base_url=ep.base_url, max_concurrency=40)
    assert len(policy.clients) == 3 and policy._slots.qsize() == 40
    out, stats, _ = run_policy(ep, CONVERSATIONS, max_concurrency=40)
    assert [c.text for c in out] == FIRST_ACTIONS and stats["requests"] == len(CONVERSATIONS)
