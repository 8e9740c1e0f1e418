"""OpenAI-compatible policy: any chat-completions endpoint (GPT-4 as in the paper, a vLLM
server, or agentray's own Ray Serve app), one request per conversation.

A teacher endpoint is slow, rate-limited and sometimes fails, so each request goes through:
a concurrency limit, a requests-per-minute and a tokens-per-minute bucket, a per-request
timeout, and retries with exponential backoff and jitter on 429 / 408 / 409 / 5xx /
timeouts / connection errors that honour the server's Retry-After. The retry loop is ours
(the client runs with ``max_retries=0``) so every attempt is counted: ``stats()`` returns
requests, retries, failures by cause, tokens and cost for the policy's lifetime.

Two clients send the requests: ``lean`` (default; ``openai_lean``: HTTP/1.1 on asyncio over
pooled keep-alive connections, only the fields the engine uses parsed, ~0.15 ms of CPU per
request; no HTTP proxies) and ``sdk`` (the ``openai`` package's ``AsyncOpenAI``, which
builds typed response models: ~1 ms). Both raise the SDK's exceptions, so everything above
behaves the same with either.
"""

from __future__ import annotations

import asyncio
import email.utils
import math
import os
import random
import time
from collections import Counter
from typing import Any, Literal
from urllib.parse import urlparse

import openai
from openai.types.chat import ChatCompletion

from agentray.model.chat import chat_messages
from agentray.policies.base import Batch, EpisodeTasks, Policy
from agentray.policies.config import OpenAIConfig
from agentray.policies.openai_lean import LeanChatClient, httpx
from agentray.types import Completion, GenerationParams, Message

LOCAL_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0", "::1"}
PLACEHOLDER_KEY = "EMPTY"  # what local OpenAI-compatible servers accept
RETRY_STATUSES = {408, 409, 429}  # and every 5xx
RETRY_AFTER_CAP_S = 300.0  # a server asking for longer is treated as asking for this
CONNECTIONS_PER_CLIENT = 16  # httpx transport only (see _make_clients)
COUNTERS = (
    "requests",  # HTTP attempts sent (first tries and retries)
    "completions",  # conversations answered
    "errors",  # conversations returned with finish_reason="error"
    "context_limits",  # conversations returned with finish_reason="context_limit"
    "retries",  # attempts after a conversation's first
    "rate_limited",  # failed attempts: 429
    "server_errors",  # failed attempts: 5xx, 408, 409
    "timeouts",  # failed attempts: no answer within timeout_s (the policy's clock)
    "connection_errors",  # failed attempts: the transport failed (refused, reset, ...)
    "prompt_tokens",
    "completion_tokens",
)


def is_local(base_url: str | None) -> bool:
    return bool(base_url) and urlparse(base_url).hostname in LOCAL_HOSTS


def resolve_api_key(api_key_env: str | None, base_url: str | None) -> str:
    """The key to send: ``api_key_env``'s value; a placeholder for a local URL or for
    ``api_key_env=None`` (an endpoint declared keyless); else a clear error."""
    if api_key_env is None:
        return PLACEHOLDER_KEY
    key = os.environ.get(api_key_env)
    if key:
        return key
    if is_local(base_url):
        return PLACEHOLDER_KEY
    raise ValueError(
        f"environment variable {api_key_env} is not set (needed for {base_url or 'api.openai.com'})"
    )


def estimate_tokens(messages: list[Message]) -> int:
    """A request's prompt size before the server counts it: ~4 characters per token."""
    return sum(math.ceil(len(m["content"]) / 4) + 4 for m in messages)


class TokenBucket:
    """An asyncio rate limiter: ``rate`` units per second refill a bucket of ``capacity``.

    ``acquire(n)`` waits until the bucket holds ``min(n, capacity)`` and takes ``n``; the
    level may go negative (a request bigger than the bucket leaves a debt later callers
    wait out), so the long-run rate holds for any request size. Waiters go in FIFO order.
    """

    def __init__(self, rate_per_s: float, capacity: float) -> None:
        if rate_per_s <= 0 or capacity <= 0:
            raise ValueError("rate and capacity must be positive")
        self.rate = rate_per_s
        self.capacity = capacity
        self.level = capacity
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self, amount: float = 1.0) -> float:
        """Take ``amount``; returns the seconds spent waiting."""
        start = time.monotonic()
        async with self._lock:
            need = min(amount, self.capacity)
            self._refill()
            while self.level < need:
                await asyncio.sleep((need - self.level) / self.rate)
                self._refill()
            self.level -= amount
        return time.monotonic() - start

    def give_back(self, amount: float) -> None:
        """Settle a reservation: positive returns units, negative takes more."""
        self._refill()
        self.level = min(self.capacity, self.level + amount)


class OpenAIPolicy(Policy):
    backend = "openai"

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str | None = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        retry_backoff_s: float = 1.0,
        retry_backoff_max_s: float = 30.0,
        price_per_1m_input: float = 0.0,
        price_per_1m_output: float = 0.0,
        client: Literal["lean", "sdk"] = "lean",
    ) -> None:
        self.name = model
        self.model = model
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self.retry_backoff_max_s = retry_backoff_max_s
        self.prices = (price_per_1m_input, price_per_1m_output)
        key = resolve_api_key(api_key_env, base_url)
        self.client_kind = client
        if client == "lean":
            self.clients: list[Any] = [LeanChatClient(key, base_url, max_concurrency)]
            sizes = [max_concurrency]
            self._chat = LeanChatClient.chat
        elif client == "sdk":
            self.clients, sizes = _make_clients(key, base_url, max_concurrency, timeout_s)
            self._chat = _sdk_chat
        else:
            raise ValueError(f"unknown OpenAI client {client!r}; allowed: lean, sdk")
        self.client = self.clients[0]
        # the concurrency limit: one slot per connection, handed out round robin
        self._slots: asyncio.Queue[int] = asyncio.Queue()
        for turn in range(max(sizes)):
            for i, size in enumerate(sizes):
                if turn < size:
                    self._slots.put_nowait(i)
        # requests are spaced evenly (a bucket of 1); tokens may burst one second's worth
        self._request_bucket = (
            TokenBucket(requests_per_minute / 60.0, 1.0) if requests_per_minute else None
        )
        self._token_bucket = (
            TokenBucket(tokens_per_minute / 60.0, max(tokens_per_minute / 60.0, 1.0))
            if tokens_per_minute
            else None
        )
        self._counts: Counter[str] = Counter()
        self._waits = {"limiter_wait_s": 0.0, "backoff_wait_s": 0.0}
        self._rng = random.Random()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "backend": self.backend, "base_url": self.base_url}

    def stats(self) -> dict[str, float]:
        """Totals since construction (or ``reset_stats``): flat numbers, summable across
        policy instances key by key. Failed attempts are counted by cause (rate_limited,
        server_errors, timeouts, connection_errors); ``errors`` counts conversations."""
        out: dict[str, float] = {key: self._counts[key] for key in COUNTERS}
        out["total_tokens"] = out["prompt_tokens"] + out["completion_tokens"]
        price_in, price_out = self.prices
        cost = out["prompt_tokens"] * price_in + out["completion_tokens"] * price_out
        out["cost_usd"] = round(cost / 1e6, 6)
        out.update({key: round(value, 3) for key, value in self._waits.items()})
        return out

    def reset_stats(self) -> dict[str, float]:
        before = self.stats()
        self._counts.clear()
        self._waits = dict.fromkeys(self._waits, 0.0)
        return before

    @classmethod
    def from_config(cls, cfg: OpenAIConfig) -> OpenAIPolicy:
        return cls(**cfg.model_dump(exclude={"backend", "params", "preflight"}))

    async def generate(
        self, batch: Batch, params: GenerationParams, tasks: EpisodeTasks = None
    ) -> list[Completion]:
        if len(batch) == 1:  # a PolicyActor's usual call: no task for gather to wrap it in
            return [await self._one(batch[0], params)]
        return list(await asyncio.gather(*(self._one(messages, params) for messages in batch)))

    async def _one(self, messages: list[Message], params: GenerationParams) -> Completion:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": chat_messages(messages),
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
        }
        if params.stop:
            request["stop"] = list(params.stop)
        # the prompt's estimate matters only to a tokens-per-minute bucket
        estimate = estimate_tokens(messages) if self._token_bucket is not None else 0
        reserve = (estimate, params.max_new_tokens)
        failure: BaseException | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self._counts["retries"] += 1
            try:
                completion = await self._send(request, reserve)
            except Exception as e:
                cause = _failure_cause(e)
                if cause is None:  # not worth retrying: this conversation fails now
                    return self._give_up(e)
                self._counts[cause] += 1
                failure = e
                if attempt < self.max_retries:
                    await self._back_off(e, attempt)
                continue
            return self._answered(completion)
        assert failure is not None
        return self._give_up(failure, attempts=self.max_retries + 1)

    async def _send(self, request: dict[str, Any], reserve: tuple[int, int]) -> Completion:
        slot = await self._slots.get()
        try:
            if self._request_bucket is not None:
                self._waits["limiter_wait_s"] += await self._request_bucket.acquire(1)
            if self._token_bucket is not None:
                self._waits["limiter_wait_s"] += await self._token_bucket.acquire(sum(reserve))
            self._counts["requests"] += 1
            try:
                completion, used = await _within(
                    self._chat(self.clients[slot], request), self.timeout_s
                )
            except BaseException:
                if self._token_bucket is not None:  # nothing generated: return that part
                    self._token_bucket.give_back(reserve[1])
                raise
        finally:
            self._slots.put_nowait(slot)
        if self._token_bucket is not None and used is not None:
            self._token_bucket.give_back(sum(reserve) - used)
        return completion

    async def _back_off(self, error: BaseException, attempt: int) -> None:
        asked = _retry_after_s(error)
        if asked is not None:  # never sooner than the server asked; spread the herd a little
            delay = min(asked, RETRY_AFTER_CAP_S) * (1.0 + 0.1 * self._rng.random())
        else:  # exponential with "equal jitter": between half and all of the step
            step = min(self.retry_backoff_max_s, self.retry_backoff_s * 2**attempt)
            delay = step * (0.5 + 0.5 * self._rng.random())
        self._waits["backoff_wait_s"] += delay
        await asyncio.sleep(delay)

    def _answered(self, completion: Completion) -> Completion:
        if completion.finish_reason == "error":
            self._counts["errors"] += 1
            return completion
        self._counts["completions"] += 1
        self._counts["prompt_tokens"] += completion.prompt_tokens
        self._counts["completion_tokens"] += completion.completion_tokens
        return completion

    def _give_up(self, error: BaseException, attempts: int = 1) -> Completion:
        text = _describe(error, self.timeout_s)
        if attempts > 1:
            text += f" (gave up after {attempts} attempts)"
        if isinstance(error, openai.BadRequestError) and _is_context_overflow(error):
            self._counts["context_limits"] += 1
            return Completion(text="", finish_reason="context_limit", error=text)
        self._counts["errors"] += 1
        return Completion(text="", finish_reason="error", error=text)

    async def aclose(self) -> None:
        for client in self.clients:
            await client.close()


async def _within(awaitable: Any, timeout_s: float) -> Any:
    """``asyncio.wait_for``, without the task it wraps the awaitable in (Python >= 3.11)."""
    if _timeout is None:  # pragma: no cover - Python 3.10
        return await asyncio.wait_for(awaitable, timeout_s)
    async with _timeout(timeout_s):
        return await awaitable


_timeout = getattr(asyncio, "timeout", None)


def _make_clients(
    api_key: str, base_url: str | None, connections: int, timeout_s: float
) -> tuple[list[Any], list[int]]:
    """The async clients and how many connections each may open.

    The aiohttp transport (openai's own, used when aiohttp is installed, as it is with
    Ray) costs about half the CPU per request of the default httpx one. httpx's pool scans
    every connection on each request, so without aiohttp the connections are spread over
    several clients of CONNECTIONS_PER_CLIENT. The transport's timeout is a backstop: the
    policy's own clock (``timeout_s``) ends a request first, so a stall is a timeout.
    """
    from openai import AsyncOpenAI

    tls = httpx.create_ssl_context()  # loading CA certificates is slow: once, shared
    backstop = timeout_s + 5.0

    def client(size: int, transport: Any) -> Any:
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        http_client = transport(limits=limits, timeout=backstop, verify=tls)
        return AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=backstop,
            max_retries=0,  # the policy's retry loop counts and paces every attempt
            http_client=http_client,
        )

    try:
        return [client(connections, openai.DefaultAioHttpClient)], [connections]
    except RuntimeError:  # openai says: aiohttp is not installed
        sizes = _shard_sizes(connections, CONNECTIONS_PER_CLIENT)
        return [client(size, openai.DefaultAsyncHttpxClient) for size in sizes], sizes


async def _sdk_chat(client: Any, request: dict[str, Any]) -> tuple[Completion, int | None]:
    """One request through the SDK: the completion and the usage's total tokens."""
    # ``post`` skips the client's per-request TypedDict walk over the messages
    # (milliseconds of CPU for a long conversation); the body is plain JSON.
    response = await client.post("/chat/completions", body=request, cast_to=ChatCompletion)
    usage = response.usage
    return _completion(response), (usage.total_tokens if usage is not None else None)


def _shard_sizes(total: int, per_client: int) -> list[int]:
    """``total`` connections split into clients of at most ``per_client``."""
    n = max(math.ceil(total / per_client), 1)
    return [total // n + (1 if i < total % n else 0) for i in range(n)]


def _failure_cause(error: BaseException) -> str | None:
    """The stats counter of a retryable failure; None when retrying cannot help."""
    if isinstance(error, asyncio.TimeoutError):  # the policy's clock: no answer in time
        return "timeouts"
    if isinstance(error, openai.APIConnectionError):  # the transport failed (incl. its timeouts)
        return "connection_errors"
    if isinstance(error, openai.APIStatusError):
        if error.status_code == 429:
            return "rate_limited"
        if error.status_code in RETRY_STATUSES or error.status_code >= 500:
            return "server_errors"
    return None


def _retry_after_s(error: BaseException) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms`` or ``Retry-After``)."""
    if not isinstance(error, openai.APIStatusError):
        return None
    headers = error.response.headers
    try:
        if "retry-after-ms" in headers:
            return max(float(headers["retry-after-ms"]) / 1000.0, 0.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:  # an HTTP date
            when = email.utils.parsedate_to_datetime(value)
            return max(when.timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def _describe(error: BaseException, timeout_s: float) -> str:
    if isinstance(error, asyncio.TimeoutError):
        return f"TimeoutError: no answer within {timeout_s}s"
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, openai.APIConnectionError):  # what the transport actually saw
        root = error
        while root.__cause__ is not None:
            root = root.__cause__
        if root is not error:
            text += f" (Connection failed: {type(root).__name__}: {root})"
    return text


def _is_context_overflow(error: openai.BadRequestError) -> bool:
    """OpenAI, vLLM and agentray.serve all say so with this code (or in the message)."""
    return error.code == "context_length_exceeded" or "context length" in str(error).lower()


def _completion(response: Any) -> Completion:
    if not response.choices:
        return Completion(text="", finish_reason="error", error="response has no choices")
    choice = response.choices[0]
    usage = response.usage
    return Completion(
        text=choice.message.content or "",
        finish_reason="length" if choice.finish_reason == "length" else "stop",
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
    )
