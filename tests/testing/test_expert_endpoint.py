"""The expert endpoint over real HTTP: the stock OpenAI client gets the expert's answers,
episodes succeed, and latency / errors / stalls are injected as configured."""

from __future__ import annotations

import time

import openai
import pytest

from agentray.envs.registry import env_class, make_env
from agentray.model.chat import chat_messages
from agentray.policies.preflight import PREFLIGHT_MESSAGES
from agentray.testing.endpoint_process import EndpointProcess, fetch_stats
from agentray.testing.expert_endpoint import (
    EndpointConfig,
    EndpointState,
    ExpertEndpoint,
    parse_args,
)
from agentray.testing.openai_wire import approx_tokens

FAMILY_CONFIGS = {"db": {"n_train": 8, "n_test": 2}, "kg": {"n_train": 8, "n_test": 2}}


@pytest.fixture
def endpoint():
    started: list[ExpertEndpoint] = []

    def start(**knobs) -> ExpertEndpoint:
        knobs.setdefault("family_configs", FAMILY_CONFIGS)
        started.append(ExpertEndpoint(**knobs).start())
        return started[-1]

    yield start
    for ep in started:
        ep.stop()


def client_for(ep: ExpertEndpoint, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=ep.base_url, api_key="EMPTY", max_retries=0, **kwargs)


def first_prompt(family: str = "db") -> list[dict[str, str]]:
    env = make_env(family, FAMILY_CONFIGS[family])
    return chat_messages(env.prompt(env.tasks("train")[0]))


def ask(client: openai.OpenAI, messages: list[dict[str, str]]):
    return client.chat.completions.create(model="expert", messages=messages)


def test_stock_client_drives_episodes_to_success(endpoint):
    ep = endpoint()
    client = client_for(ep)
    assert [m.id for m in client.models.list().data] == ["expert"]
    usage = {"prompt": 0, "completion": 0, "requests": 0}
    for family in ("db", "kg"):
        env = make_env(family, FAMILY_CONFIGS[family])
        for task in env.tasks("train")[:3] + env.tasks("test")[:1]:
            messages = env.reset(task)
            while True:
                response = ask(client, chat_messages(messages))
                text = response.choices[0].message.content
                usage["requests"] += 1
                usage["prompt"] += response.usage.prompt_tokens
                usage["completion"] += response.usage.completion_tokens
                assert response.usage.completion_tokens == approx_tokens(text)
                messages.append({"role": "assistant", "content": text})
                result = env.step(text)
                if result.done:
                    break
                messages.append({"role": "user", "content": result.observation or ""})
            assert result.reward == 1.0, (task.id, result)
    stats = fetch_stats(ep.base_url)
    assert stats["requests"] == stats["completions"] == usage["requests"] > 8
    assert stats["prompt_tokens"] == usage["prompt"]
    assert stats["completion_tokens"] == usage["completion"]
    assert stats["errors_injected"] == stats["stalls"] == 0


@pytest.mark.parametrize("family", ["alfworld", "mind2web", "scienceworld"])
def test_by_default_it_answers_every_family_that_can_run_here(endpoint, family):
    """No ``families``: held-in families beyond db and kg and the held-out ones are
    answered too (each indexed when a conversation first needs it)."""
    why_not = env_class(family).unavailable()
    if why_not is not None:
        pytest.skip(f"{family} cannot run here: {why_not}")
    configs = {family: {"n_train": 2, "n_test": 1}}
    ep = endpoint(family_configs=configs)
    assert ep.config.families is None
    client = client_for(ep)
    env = make_env(family, configs[family])
    for task in env.tasks("train") + env.tasks("test"):
        reply = ask(client, chat_messages(env.prompt(task))).choices[0].message.content
        assert reply == env.expert_actions(task)[0], task.id
    # the stages' preflight request gets its answer without indexing anything more
    indexed = list(ep.state.expert.indexed)
    assert ask(client, PREFLIGHT_MESSAGES).choices[0].message.content == "OK"
    assert ep.state.expert.indexed == indexed and family in indexed


def test_unknown_conversation_and_context_limit_are_400s(endpoint):
    ep = endpoint(families=["db"], context_limit_tokens=50)
    client = client_for(ep)
    with pytest.raises(openai.BadRequestError, match="no task"):
        ask(client, [{"role": "user", "content": "what is the capital of France?"}])
    with pytest.raises(openai.BadRequestError) as overflow:
        ask(client, first_prompt("db"))
    assert overflow.value.code == "context_length_exceeded"
    stats = ep.stats()
    assert stats["bad_requests"] == 1 and stats["context_limits"] == 1


@pytest.mark.parametrize(
    "knobs",
    [
        {"latency_ms": 300},
        {"latency_ms": 150, "latency_dist": "uniform", "latency_spread_ms": 100},
        {"latency_ms": 150, "latency_dist": "exponential", "latency_spread_ms": 50},
    ],
)
def test_latency_is_injected(endpoint, knobs):
    ep = endpoint(families=["db"], **knobs)
    client = client_for(ep)
    messages = first_prompt("db")
    elapsed = []
    for _ in range(4):
        t0 = time.perf_counter()
        ask(client, messages)
        elapsed.append(time.perf_counter() - t0)
    assert min(elapsed) >= knobs["latency_ms"] / 1000
    assert ep.stats()["completions"] == 4


def test_error_injection_rate_statuses_and_retry_after(endpoint):
    ep = endpoint(families=["db"], error_rate=0.3, retry_after_s=2.5, seed=7)
    client = client_for(ep)
    messages = first_prompt("db")
    failures: list[openai.APIStatusError] = []
    n = 150
    for _ in range(n):
        try:
            ask(client, messages)
        except openai.APIStatusError as e:
            failures.append(e)
    assert 0.2 * n <= len(failures) <= 0.4 * n
    statuses = [e.status_code for e in failures]
    assert set(statuses) == {429, 500, 503}
    for e in failures:
        if e.status_code == 429:
            assert e.response.headers["retry-after"] == "3"  # whole seconds, rounded up
            assert e.response.headers["retry-after-ms"] == "2500"
        else:
            assert "retry-after" not in e.response.headers
    stats = ep.stats()
    assert stats["requests"] == n and stats["errors_injected"] == len(failures)
    assert stats["completions"] == n - len(failures)
    assert stats["errors_by_status"] == {str(s): statuses.count(s) for s in {429, 500, 503}}


def test_injection_draws_are_seeded():
    def fates(seed: int) -> list[tuple]:
        state = EndpointState(
            EndpointConfig(
                families=["db"],
                family_configs=FAMILY_CONFIGS,
                error_rate=0.3,
                stall_rate=0.2,
                latency_ms=10,
                latency_dist="exponential",
                latency_spread_ms=20,
                seed=seed,
            )
        )
        return [state.draw() for _ in range(200)]

    first = fates(3)
    assert first == fates(3) and first != fates(4)
    counts = {fate: sum(f[0] == fate for f in first) for fate in ("answer", "error", "stall")}
    assert 20 <= counts["stall"] <= 60 and 40 <= counts["error"] <= 80
    assert all(latency >= 0.010 for fate, _, latency in first if fate != "stall")


def test_a_stall_never_answers_until_the_client_times_out(endpoint):
    ep = endpoint(families=["db"], stall_rate=1.0)
    client = client_for(ep, timeout=0.5)
    t0 = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        ask(client, first_prompt("db"))
    assert time.perf_counter() - t0 >= 0.5
    stats = ep.stats()
    assert stats["stalls"] == 1 and stats["completions"] == 0
    deadline = time.monotonic() + 5
    while ep.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ep.stats()["in_flight"] == 0  # the server noticed the client leave
    t0 = time.perf_counter()
    ep.stop()  # a stalled handler does not hold the server up
    assert time.perf_counter() - t0 < 5


def test_config_validation():
    with pytest.raises(ValueError, match="allowed"):
        EndpointConfig(families=["chess"])
    with pytest.raises(ValueError, match="<= 1"):
        EndpointConfig(error_rate=0.6, stall_rate=0.6)
    with pytest.raises(ValueError, match="400-599"):
        EndpointConfig(error_codes=[200])
    cfg = parse_args(["--families", "db", "--latency-ms", "200", "--error-codes", "429,503"])
    assert cfg.families == ["db"] and cfg.latency_ms == 200 and cfg.error_codes == [429, 503]


def test_cli_in_a_child_process():
    cfg = EndpointConfig(families=["db"], family_configs=FAMILY_CONFIGS, latency_ms=100)
    with EndpointProcess(cfg) as ep:
        client = openai.OpenAI(base_url=ep.base_url, api_key="EMPTY", max_retries=0)
        t0 = time.perf_counter()
        response = ask(client, first_prompt("db"))
        assert time.perf_counter() - t0 >= 0.1
        env = make_env("db", FAMILY_CONFIGS["db"])
        assert response.choices[0].message.content == env.expert_actions(env.tasks("train")[0])[0]
        assert ep.stats()["completions"] == 1


def _statuses_of(client: openai.OpenAI, n: int) -> list[int]:
    out = []
    for _ in range(n):
        try:
            ask(client, first_prompt("db"))
            out.append(200)
        except openai.APIStatusError as e:
            out.append(e.status_code)
    return out


def test_an_outage_fails_a_window_of_requests_then_recovers(endpoint):
    """outage_after answered, outage_requests 503s, then answers again; POST /faults
    schedules another (the models list is not part of it)."""
    import requests

    ep = endpoint(families=["db"], outage_after=2, outage_requests=3)
    client = client_for(ep)
    assert [m.id for m in client.models.list().data] == ["expert"]
    assert _statuses_of(client, 7) == [200, 200, 503, 503, 503, 200, 200]
    response = requests.post(
        f"{ep.url}/faults", json={"outage_after": 1, "outage_requests": 2}, timeout=10
    )
    assert response.json() == {"outage_after": 1, "outage_requests": 2}
    assert _statuses_of(client, 4) == [200, 503, 503, 200]
    stats = ep.stats()
    assert stats["outage_errors"] == 5 and stats["errors_by_status"] == {"503": 5}
    bad = requests.post(f"{ep.url}/faults", json={"outage_after": 1}, timeout=10)
    assert bad.status_code == 400


def test_a_client_that_leaves_mid_request_is_counted_not_a_traceback(endpoint, capfd):
    """A caller killed while its request waits out the latency (a SIGKILLed PolicyActor):
    the server counts a disconnect; it used to log an ASGI traceback per request."""
    ep = endpoint(families=["db"], latency_ms=1500)
    client = client_for(ep, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        ask(client, first_prompt("db"))
    deadline = time.monotonic() + 10
    while ep.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = ep.stats()
    assert stats["in_flight"] == 0 and stats["disconnects"] == 1
    assert stats["completions"] == 0
    assert "Traceback" not in capfd.readouterr().err
