"""An OpenAI-compatible test server that answers with the scripted expert.

For tests and benchmarks: real HTTP (uvicorn + starlette), with seeded latency, error and
stall injection, and outages it recovers from.

It finds the task a conversation is about (``TaskIndex``) and replies with the expert's next
action, so episodes driven through it really succeed. By default it knows every registered
family that can run here (held-out ones too), each indexed when a conversation first needs
it; ``families`` lists the ones to index at start instead (and answers only those). The
stages' preflight request is answered "OK". An ``agentray instruct`` prompt is
answered by the stand-in teacher (``instruct_teacher``: procedural proposals plus the faults
named in ``instruct_faults``). ``POST /v1/chat/completions``,
``GET /v1/models``, ``GET /stats`` (counters; ``disconnects``: callers that left before
their answer), ``POST /stats/reset``, ``POST /faults``
(``{"outage_after": K, "outage_requests": N}``: after K more chat requests, the next N fail
with 503, then it answers again).

Usage counts are approximate: one token per whitespace-separated word of each message's
content (``approx_tokens``); prompt tokens sum over the request's messages.

    with ExpertEndpoint(latency_ms=200, error_rate=0.1) as ep:   # in-process, background thread
        client = openai.OpenAI(base_url=ep.base_url, api_key="EMPTY")
    python -m agentray.testing.expert_endpoint --port 8000 --latency-ms 200 --error-rate 0.1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import signal
import threading
import time
from collections import Counter
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agentray.envs.registry import family_names
from agentray.http_serving import ThreadedServer
from agentray.testing.conversation_expert import ConversationExpert, available_families
from agentray.testing.instruct_teacher import FAULT_REASONS, StandInTeacher
from agentray.testing.openai_wire import (
    PREFLIGHT_REPLY,
    FastJSONResponse,
    approx_tokens,
    chat_completion_body,
    error_response,
    is_preflight,
    json_body,
    request_messages,
)

READY_LINE = "agentray expert endpoint listening on "
ERROR_KINDS = {429: ("rate_limit_exceeded", "requests"), 408: ("timeout", "server_error")}


class EndpointConfig(BaseModel):
    """What the endpoint knows (env families) and what it injects (latency, errors, stalls)."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="interface to bind")
    port: int = Field(0, ge=0, le=65535, description="0 = any free port")
    model: str = Field("expert", description="model name listed by /v1/models")
    families: list[str] | None = Field(
        None,
        description="env families whose tasks it answers (indexed at start); None: every "
        "registered family that can run here, held-out ones too, each indexed when the first "
        "conversation no indexed family knows arrives",
    )
    family_configs: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="per-family settings: the same the run's envs use (its envs: section), "
        "else the tasks differ and its conversations are not found",
    )
    latency_ms: float = Field(0.0, ge=0, description="fixed latency; the minimum otherwise")
    latency_dist: Literal["fixed", "uniform", "exponential"] = Field(
        "fixed", description="fixed: latency_ms; uniform / exponential: see latency_spread_ms"
    )
    latency_spread_ms: float = Field(
        0.0,
        ge=0,
        description="uniform: latency in [latency_ms, latency_ms + spread]; "
        "exponential: latency_ms + an exponential draw of this mean",
    )
    error_rate: float = Field(0.0, ge=0, le=1, description="fraction of requests failed")
    error_codes: list[int] = Field(
        default_factory=lambda: [429, 500, 503], description="injected statuses, drawn uniformly"
    )
    retry_after_s: float = Field(1.0, ge=0, description="Retry-After sent with injected 429s")
    stall_rate: float = Field(
        0.0, ge=0, le=1, description="fraction of requests never answered (until the client leaves)"
    )
    max_stall_s: float = Field(600.0, gt=0, description="a stalled request ends after this anyway")
    outage_after: int = Field(
        0, ge=0, description="outage: chat requests answered before it starts (a preflight)"
    )
    outage_requests: int = Field(
        0,
        ge=0,
        description="outage: chat requests failed with 503 once it starts, then the endpoint "
        "recovers (POST /faults schedules another)",
    )
    context_limit_tokens: int | None = Field(
        None, gt=0, description="prompts longer than this get 400 context_length_exceeded"
    )
    seed: int = Field(0, description="seeds every injected draw")
    instruct_faults: list[str] = Field(
        default_factory=list,
        description="instruct prompts: faulty proposals the stand-in teacher writes first, "
        f"one each per family, from {', '.join(FAULT_REASONS)}",
    )

    @field_validator("families")
    @classmethod
    def _known_families(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        unknown = [f for f in value if f not in family_names(held_out=True)]
        if unknown:
            raise ValueError(
                f"unknown env families {unknown}; allowed: {family_names(held_out=True)}"
            )
        return value

    @field_validator("instruct_faults")
    @classmethod
    def _known_faults(cls, value: list[str]) -> list[str]:
        unknown = [f for f in value if f not in FAULT_REASONS]
        if unknown:
            raise ValueError(f"unknown instruct faults {unknown}; allowed: {list(FAULT_REASONS)}")
        return value

    @field_validator("error_codes")
    @classmethod
    def _error_statuses(cls, value: list[int]) -> list[int]:
        if not value or any(not 400 <= code <= 599 for code in value):
            raise ValueError("error_codes must be HTTP error statuses (400-599)")
        return value

    @model_validator(mode="after")
    def _rates_fit(self) -> EndpointConfig:
        if self.error_rate + self.stall_rate > 1:
            raise ValueError("error_rate + stall_rate must be <= 1 (they are disjoint fractions)")
        return self


# -- request handling ---------------------------------------------------------------------


class EndpointState:
    """Counters, the seeded injection draws and the expert; one per server."""

    def __init__(self, config: EndpointConfig) -> None:
        self.config = config
        configs = config.family_configs
        if config.families is not None:
            self.expert = ConversationExpert({f: configs.get(f) for f in config.families})
        else:  # every family that can run here, indexed as conversations need them
            lazy = {f: configs.get(f) for f in available_families()}
            self.expert = ConversationExpert({}, lazy=lazy)
        self.teacher = StandInTeacher(config.instruct_faults, config.seed)
        self.rng = random.Random(config.seed)
        self.stopping = False
        self.counters: Counter[str] = Counter()
        self.errors_by_status: Counter[str] = Counter()
        self.outage = [config.outage_after, config.outage_requests]  # requests before, in it

    def schedule_outage(self, after: int, requests: int) -> dict[str, int]:
        """After ``after`` more chat requests, fail the next ``requests`` with 503."""
        self.outage = [after, requests]
        return {"outage_after": after, "outage_requests": requests}

    def _in_outage(self) -> bool:
        """Counts one chat request down the scheduled outage: True if it falls inside."""
        if self.outage[1] == 0:
            return False
        if self.outage[0] > 0:
            self.outage[0] -= 1
            return False
        self.outage[1] -= 1
        self.counters["outage_errors"] += 1
        return True

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            key: self.counters[key]
            for key in (
                "requests",
                "completions",
                "errors_injected",
                "stalls",
                "bad_requests",
                "context_limits",
                "prompt_tokens",
                "completion_tokens",
                "in_flight",
                "max_in_flight",
                "instruct_replies",
                "outage_errors",
                "disconnects",
            )
        }
        out["errors_by_status"] = dict(self.errors_by_status)
        out["instruct_proposals"] = len(self.teacher.log)
        out["instruct_faults"] = dict(Counter(e["fault"] for e in self.teacher.log if e["fault"]))
        return out

    def reset_stats(self) -> dict[str, Any]:
        before = self.stats()
        in_flight = self.counters["in_flight"]
        self.counters.clear()
        self.errors_by_status.clear()
        self.counters["in_flight"] = self.counters["max_in_flight"] = in_flight
        return before

    def draw(self) -> tuple[str, int, float]:
        """(fate, error status, latency s) for one request: fate is answer, error or stall."""
        cfg = self.config
        u = self.rng.random()
        code = self.rng.choice(cfg.error_codes)
        if u < cfg.stall_rate:
            return "stall", code, 0.0
        fate = "error" if u < cfg.stall_rate + cfg.error_rate else "answer"
        return fate, code, self._latency_s()

    def _latency_s(self) -> float:
        cfg = self.config
        extra = 0.0
        if cfg.latency_dist == "uniform":
            extra = self.rng.uniform(0.0, cfg.latency_spread_ms)
        elif cfg.latency_dist == "exponential" and cfg.latency_spread_ms > 0:
            extra = self.rng.expovariate(1.0 / cfg.latency_spread_ms)
        return (cfg.latency_ms + extra) / 1000.0

    async def chat(self, request: Request) -> JSONResponse:
        self.counters["requests"] += 1
        self.counters["in_flight"] += 1
        self.counters["max_in_flight"] = max(
            self.counters["max_in_flight"], self.counters["in_flight"]
        )
        try:
            if self._in_outage():
                return self._injected_error(503)
            fate, code, latency = self.draw()
            if fate == "stall":
                self.counters["stalls"] += 1
                return await self._stall(request)
            await asyncio.sleep(latency)
            if fate == "error":
                return self._injected_error(code)
            return self._answer(await json_body(request))
        except ClientDisconnect:  # the caller left (timed out, killed): nobody to answer
            self.counters["disconnects"] += 1
            return error_response(499, "client disconnected", "server_error", "disconnected")
        finally:
            self.counters["in_flight"] -= 1

    async def _stall(self, request: Request) -> JSONResponse:
        deadline = time.monotonic() + self.config.max_stall_s
        while not self.stopping and time.monotonic() < deadline:
            if await request.is_disconnected():
                break
            await asyncio.sleep(0.05)
        return error_response(504, "stalled (injected)", "server_error", "stalled")

    def _injected_error(self, code: int) -> JSONResponse:
        self.counters["errors_injected"] += 1
        self.errors_by_status[str(code)] += 1
        kind, kind_type = ERROR_KINDS.get(code, ("injected_error", "server_error"))
        headers = {}
        if code == 429:
            wait = self.config.retry_after_s
            headers = {"retry-after": str(math.ceil(wait)), "retry-after-ms": str(int(wait * 1000))}
        return error_response(code, f"injected {code}", kind_type, kind, headers)

    def _answer(self, body: Any) -> JSONResponse:
        messages = request_messages(body)
        if messages is None:
            self.counters["bad_requests"] += 1
            return error_response(400, "'messages' must be a list of {role, content} strings")
        prompt_tokens = sum(approx_tokens(m["content"]) for m in messages)
        limit = self.config.context_limit_tokens
        if limit is not None and prompt_tokens > limit:
            self.counters["context_limits"] += 1
            message = f"This model's maximum context length is {limit} tokens; the messages have {prompt_tokens}"
            return error_response(400, message, code="context_length_exceeded", param="messages")
        try:
            if is_preflight(messages):
                text = PREFLIGHT_REPLY
            elif self.teacher.answers(messages):
                text = self.teacher.reply(messages)
                self.counters["instruct_replies"] += 1
            else:
                text = self.expert.reply(messages)
        except (KeyError, ValueError) as e:
            self.counters["bad_requests"] += 1
            return error_response(400, f"the expert knows no task for this conversation: {e}")
        completion_tokens = approx_tokens(text)
        self.counters["completions"] += 1
        self.counters["prompt_tokens"] += prompt_tokens
        self.counters["completion_tokens"] += completion_tokens
        return FastJSONResponse(
            chat_completion_body(
                body.get("model") or self.config.model, text, prompt_tokens, completion_tokens
            )
        )

    async def models(self, request: Request) -> JSONResponse:
        model = {"id": self.config.model, "object": "model", "created": 0, "owned_by": "agentray"}
        return JSONResponse({"object": "list", "data": [model]})

    async def get_stats(self, request: Request) -> JSONResponse:
        return JSONResponse(self.stats())

    async def post_reset(self, request: Request) -> JSONResponse:
        return JSONResponse(self.reset_stats())

    async def post_faults(self, request: Request) -> JSONResponse:
        body = await json_body(request)
        try:
            after, n = int(body.get("outage_after", 0)), int(body["outage_requests"])
        except (AttributeError, KeyError, TypeError, ValueError):
            return error_response(400, 'expected {"outage_after": K, "outage_requests": N}')
        return JSONResponse(self.schedule_outage(max(after, 0), max(n, 0)))


def build_app(state: EndpointState) -> Any:
    """The ASGI app. Chat requests skip Starlette's routing and middleware (about half of
    the endpoint's CPU per request), so in a benchmark the endpoint costs little of the
    CPU the client it measures shares."""
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", state.chat, methods=["POST"]),
            Route("/v1/models", state.models, methods=["GET"]),
            Route("/stats", state.get_stats, methods=["GET"]),
            Route("/stats/reset", state.post_reset, methods=["POST"]),
            Route("/faults", state.post_faults, methods=["POST"]),
        ]
    )

    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == "/v1/chat/completions"
        ):
            response = await state.chat(Request(scope, receive))
            await response(scope, receive, send)
        else:
            await app(scope, receive, send)

    return asgi


# -- running it ---------------------------------------------------------------------------


def endpoint_config(config: EndpointConfig | None, overrides: dict[str, Any]) -> EndpointConfig:
    base = config.model_dump() if config else {}
    return EndpointConfig(**{**base, **overrides})


class ExpertEndpoint:
    """The endpoint on a background thread of this process (uvicorn's own event loop).

    ``ExpertEndpoint(latency_ms=50).start()`` ... ``.stop()``, or use it as a context
    manager. Shares this process's GIL: for throughput figures use ``EndpointProcess``.
    """

    def __init__(self, config: EndpointConfig | None = None, **overrides: Any) -> None:
        self.config = endpoint_config(config, overrides)
        self.state = EndpointState(self.config)
        self._server = ThreadedServer(
            build_app(self.state),
            self.config.host,
            self.config.port,
            "expert endpoint",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=75,  # longer than clients keep idle connections (httpx: 5 s)
            backlog=4096,
        )
        self.port: int = self._server.port

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What an OpenAI client takes as ``base_url``."""
        return f"{self.url}/v1"

    def start(self, timeout_s: float = 30.0) -> ExpertEndpoint:
        self._server.start(timeout_s)
        return self

    @property
    def alive(self) -> bool:
        return self._server.alive

    def stop(self, timeout_s: float = 10.0) -> None:
        self.state.stopping = True
        self._server.stop(timeout_s)

    def stats(self) -> dict[str, Any]:
        return self.state.stats()

    def open_connections(self) -> int:
        """Client connections open now (kept alive between requests, or busy)."""
        return self._server.open_connections()

    def reset_stats(self) -> dict[str, Any]:
        """Zero the counters (returns them as they were)."""
        return self.state.reset_stats()

    def __enter__(self) -> ExpertEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- CLI ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> EndpointConfig:
    """One ``--flag`` per EndpointConfig field (``--latency-ms 200``, ``--families db,kg``,
    ``--family-configs '{"db": {"n_train": 500}}'``), or the whole config as ``--config-json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-json", help="a whole EndpointConfig as JSON")
    for name, field in EndpointConfig.model_fields.items():
        parser.add_argument("--" + name.replace("_", "-"), dest=name, help=field.description)
    args = vars(parser.parse_args(argv))
    base = json.loads(args.pop("config_json") or "{}")
    given = {name: _flag_value(name, value) for name, value in args.items() if value is not None}
    return EndpointConfig(**{**base, **given})


def _flag_value(name: str, text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    annotation = EndpointConfig.model_fields[name].annotation
    is_list = list in (get_origin(annotation), *map(get_origin, get_args(annotation)))
    if is_list and not isinstance(value, list):
        return str(text).split(",")
    return value


def main(argv: list[str] | None = None) -> None:
    endpoint = ExpertEndpoint(parse_args(argv)).start()
    print(READY_LINE + endpoint.url, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while endpoint.alive and not stop.wait(0.5):
        pass
    endpoint.stop()


if __name__ == "__main__":
    main()
