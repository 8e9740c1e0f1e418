"""The lean transport of the OpenAI policy: HTTP/1.1 on asyncio with pooled keep-alive
connections (httptools parses the responses, as in uvicorn; both come with ray[serve]),
reading only what the engine uses: the first choice's message content and finish reason,
and usage.

The ``openai`` SDK builds typed response models for every reply (about 1 ms of CPU per
request), aiohttp about 0.3 ms; this path costs a JSON encode and decode (pydantic-core's,
several times faster than the ``json`` module's on a conversation), ~0.1 ms.
Failures are raised as the SDK's own exceptions (``openai.RateLimitError``,
``openai.APIConnectionError``, ...), built only when a request fails, so the policy's retry,
Retry-After and error handling is the same for both clients. It does not go through an
HTTP proxy: with one configured for the endpoint it refuses to start (use ``client: sdk``).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.request
import zlib
from typing import Any
from urllib.parse import urlsplit

import httptools
import openai
import pydantic_core

from agentray.types import Completion

try:  # the transport the installed openai client is built on (its exceptions carry one)
    import httpx2 as httpx
except ImportError:  # pragma: no cover - openai 1.x
    import httpx

DEFAULT_BASE_URL = "https://api.openai.com/v1"
STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {  # as the SDK maps them
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}
Response = tuple[int, list[tuple[bytes, bytes]], bytes, bool]  # status, headers, body, reuse


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a request at a time, its response parsed as it arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(ConnectionError(f"invalid HTTP response: {e}"))
            self.close()

    def _fail(self, error: BaseException) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            status = self._parser.get_status_code()
            reuse = self._parser.should_keep_alive()
            self._waiter.set_result((status, self._headers, b"".join(self._body), reuse))

    def send(self, request: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        self._headers, self._body = [], []
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class LeanChatClient:
    """Chat completions over pooled keep-alive connections. The policy's slots bound the
    requests in flight, so connections never outnumber them (``connections``); there is
    no timeout here: the policy's own clock ends a request (and its connection)."""

    def __init__(self, api_key: str, base_url: str | None, connections: int) -> None:
        url = urlsplit((base_url or DEFAULT_BASE_URL).rstrip("/") + "/chat/completions")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        _refuse_proxy(url.scheme, url.hostname)
        self.api_key = api_key
        self.url = url.geturl()
        self.connections = connections
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._tls = url.scheme == "https"
        self._head = (
            f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Authorization: Bearer {api_key}\r\nContent-Type: application/json\r\n"
            "Accept: application/json\r\nUser-Agent: agentray\r\nContent-Length: "
        ).encode()
        self._ssl: ssl.SSLContext | None = None
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    async def chat(self, request: dict[str, Any]) -> tuple[Completion, int | None]:
        """The completion and the usage's total tokens (None when the server sent none);
        raises the SDK's exception for a failed request."""
        body = pydantic_core.to_json(request)  # compact UTF-8, as json.dumps(ensure_ascii=False)
        message = b"".join((self._head, str(len(body)).encode(), b"\r\n\r\n", body))
        try:
            connection = await self._connection()
            status, headers, raw, reuse = await self._exchange(connection, message)
        except (OSError, ConnectionError) as e:  # refused, reset, TLS, DNS, bad HTTP
            raise openai.APIConnectionError(request=httpx.Request("POST", self.url)) from e
        raw = _decoded(headers, raw)
        if status >= 400:
            raise status_error(self.url, status, headers, raw)
        return parse_completion(raw)

    async def _exchange(self, connection: _Connection, message: bytes) -> Response:
        done = False
        try:
            response = await connection.send(message)
            done = response[3]
            return response
        finally:  # a cancelled or failed exchange leaves the connection in no known state
            if done and not connection.closed:
                self._idle.append(connection)
            else:
                connection.close()
                self._open.discard(connection)

    async def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # connections belong to the loop that opened them
            self._idle, self._open, self._loop = [], set(), loop
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
            self._open.discard(connection)
        if self._tls and self._ssl is None:
            self._ssl = httpx.create_ssl_context()  # loading CA certificates is slow: once
        _, connection = await loop.create_connection(
            _Connection, self._host, self._port, ssl=self._ssl if self._tls else None
        )
        self._open.add(connection)
        return connection

    async def close(self) -> None:
        for connection in list(self._open):
            connection.close()
        self._idle, self._open = [], set()


def _refuse_proxy(scheme: str, host: str) -> None:
    proxy = urllib.request.getproxies().get(scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        raise ValueError(
            f"OpenAIConfig.client 'lean' does not go through HTTP proxies, and {scheme}_proxy "
            f"({proxy}) is set for {host}: set client: sdk (or add {host} to no_proxy)"
        )


def _decoded(headers: list[tuple[bytes, bytes]], raw: bytes) -> bytes:
    """The body without its content encoding (none is asked for; a server may still)."""
    for name, value in headers:
        if name.lower() == b"content-encoding" and value.strip().lower() in (b"gzip", b"deflate"):
            return zlib.decompress(raw, 47)  # 47: gzip or zlib header, detected
    return raw


def parse_completion(raw: bytes) -> tuple[Completion, int | None]:
    """The first choice's text and finish reason and the usage, from a response body."""
    try:
        data = pydantic_core.from_json(raw)
        choices = data.get("choices")
        if not choices:
            return Completion(text="", finish_reason="error", error="response has no choices"), None
        choice = choices[0]
        usage = data.get("usage") or {}
        prompt = int(usage.get("prompt_tokens") or 0)
        generated = int(usage.get("completion_tokens") or 0)
        completion = Completion(
            text=(choice.get("message") or {}).get("content") or "",
            finish_reason="length" if choice.get("finish_reason") == "length" else "stop",
            prompt_tokens=prompt,
            completion_tokens=generated,
        )
    except (AttributeError, TypeError, ValueError) as e:
        error = f"malformed chat completion ({type(e).__name__}: {e}): {raw[:200]!r}"
        return Completion(text="", finish_reason="error", error=error), None
    return completion, (int(usage.get("total_tokens") or prompt + generated) if usage else None)


def status_error(
    url: str, status: int, headers: list[tuple[bytes, bytes]], raw: bytes
) -> openai.APIStatusError:
    """The exception the SDK raises for this error response (same class, message, body)."""
    text = raw.decode(errors="replace").strip()
    message = f"Error code: {status}"
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = text
    else:  # only the error's own message goes into the text; the body stays on the error
        error = body.get("error", body) if isinstance(body, dict) else None
        detail = error.get("message") if isinstance(error, dict) else None
        if isinstance(detail, str) and detail:
            message += f" - {detail}"
    response = httpx.Response(
        status,
        headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
        content=raw,
        request=httpx.Request("POST", url),
    )
    data = body.get("error", body) if isinstance(body, dict) else body
    cls = STATUS_ERRORS.get(status, openai.InternalServerError if status >= 500 else None)
    return (cls or openai.APIStatusError)(message, response=response, body=data)
