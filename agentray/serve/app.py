"""Ray Serve app: an OpenAI-compatible API over a local HF checkpoint (or vLLM on GPUs).

Two deployments, as in ``ray.serve.llm``:

- ``OpenAIIngress`` (FastAPI, CPU only) checks the API key, validates requests, templates
  and tokenizes prompts, and speaks HTTP: JSON bodies, server-sent events for streams,
  OpenAI-style errors.
- ``HFModelServer`` (one replica per GPU or CPU slice) batches what its replicas receive
  with ``@serve.batch`` and decodes step by step (``agentray.serve.model_server``).

Backpressure, in two lines. The ingress admits at most what the model replicas hold
(``max_ongoing_requests`` each) plus ``max_queued_requests`` completion requests at once and
answers the rest before reading their body (``agentray.serve.admission``): a rejection costs
no parsing, templating, tokenization or queueing. Behind it, Ray Serve's own knobs on the
model deployment: a replica takes at most ``max_ongoing_requests``, each ingress replica
queues at most ``max_queued_requests`` more and rejects the rest at once (Ray's
``BackPressureError``; a request with several choices takes several slots). The client gets
either as a 503 (or 429) with an OpenAI-style body and ``Retry-After``.
"""

import asyncio
import hmac
import json
import logging
import time
import urllib.request
from typing import Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentray import storage
from agentray.serve.admission import Admission, AdmissionMiddleware, admission_limit
from agentray.serve.config import ServeConfig, resolve_api_key
from agentray.serve.decode import DecodeRequest, StepEvent
from agentray.serve.logprobs import ChoiceLogprobs, TokenStrings
from agentray.serve.model_server import HFModelServer
from agentray.serve.protocol import (
    APIError,
    ChatCompletionRequest,
    ChunkWriter,
    CompletionRequest,
    chat_response,
    error_body,
    text_response,
)
from agentray.serve.relay import QuietBackpressure, merge_streams, reject_overload, sse_body

# -- HTTP errors, all in OpenAI's shape --------------------------------------------------

api = FastAPI(title="agentray", description="OpenAI-compatible chat and text completions")
api.add_middleware(AdmissionMiddleware)


def _error_response(error: APIError) -> JSONResponse:
    return JSONResponse(status_code=error.status, content=error.body(), headers=error.headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return f"request body is not valid JSON: {first.get('ctx', {}).get('error', '')}", None
    return (f"{param}: {first['msg']}" if param else first["msg"]), param


@api.exception_handler(APIError)
async def _api_error(_: Request, exc: APIError) -> JSONResponse:
    return _error_response(exc)


@api.exception_handler(RequestValidationError)
async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    message, param = _validation_message(exc)
    body = error_body(message, "invalid_request_error", param, "invalid_value")
    return JSONResponse(status_code=400, content=body)


@api.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return JSONResponse(status_code=exc.status_code, content=error_body(str(exc.detail), kind))


@api.exception_handler(Exception)
async def _server_error(_: Request, exc: Exception) -> JSONResponse:
    body = error_body(f"{type(exc).__name__}: {exc}", "server_error")
    return JSONResponse(status_code=500, content=body)


async def require_api_key(request: Request) -> None:
    """``Authorization: Bearer <key>`` when the server has a key (checked before the body
    is validated, so a bad key is a 401 whatever the body)."""
    expected: str | None = getattr(request.app.state, "api_key", None)
    if not expected:
        return
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), expected):
        raise APIError(
            401,
            "missing or incorrect API key: send it as 'Authorization: Bearer <key>'",
            code="invalid_api_key",
        )


Authorized = [Depends(require_api_key)]

# -- the ingress deployment --------------------------------------------------------------
# Serve pickles the deployment class when it is decorated: helpers it calls come first.


@serve.deployment
@serve.ingress(api)
class OpenAIIngress:
    def __init__(self, model: DeploymentHandle, config: dict[str, Any], api_key: str | None):
        from agentray.serve.encode import PromptEncoder

        self.cfg = ServeConfig(**config)
        self.model = model
        self.encoder = PromptEncoder(self.cfg.model)
        self.strings = TokenStrings(self.encoder.tokenizer)
        self.created = int(time.time())
        self.rejected = 0
        api.state.api_key = api_key
        api.state.admission = Admission(
            admission_limit(self.cfg), self.cfg.overload_status_code, self.cfg.retry_after_s
        )
        logging.getLogger("ray.serve").addFilter(QuietBackpressure())

    @api.get("/health")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/stats", dependencies=Authorized)
    async def get_stats(self) -> dict[str, int]:
        """One model replica's counts (how well requests are batched), and the requests
        this ingress replica rejected for overload (``rejected_unread``: those turned away
        before their body was read, the rest when sent to the model)."""
        admission = api.state.admission
        return {
            **await self.model.stats.remote(),
            "rejected": self.rejected + admission.rejected,
            "rejected_unread": admission.rejected,
        }

    @api.get("/v1/models", dependencies=Authorized)
    async def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [self._card()]}

    @api.get("/v1/models/{model_id:path}", dependencies=Authorized)
    async def model_card(self, model_id: str) -> dict[str, Any]:
        self._check_model(model_id)
        return self._card()

    @api.post("/v1/chat/completions", dependencies=Authorized)
    async def chat_completions(self, request: ChatCompletionRequest) -> Any:
        self._check_model(request.model)
        self._check_choices(request.n)
        prompt = self.encoder.encode_chat([m.plain() for m in request.messages])
        return await self._complete("chat", request, [prompt], "messages")

    @api.post("/v1/completions", dependencies=Authorized)
    async def completions(self, request: CompletionRequest) -> Any:
        self._check_model(request.model)
        prompts = self.encoder.encode_prompts(request.prompt)
        self._check_choices(request.n * len(prompts))
        return await self._complete("text", request, prompts, "prompt")

    async def _complete(
        self,
        kind: Literal["chat", "text"],
        request: ChatCompletionRequest | CompletionRequest,
        prompts: list[list[int]],
        param: str,
    ) -> Any:
        """``n`` choices per prompt, choice ``i * n + j`` the ``j``-th of prompt ``i``."""
        calls = self._decode_requests(request, prompts, param)
        if request.stream:
            return await self._stream(kind, calls, request.n, request.include_usage)
        finals = await self._generate(calls)
        logprobs = [ChoiceLogprobs(kind, self.strings).format(f.logprobs) for f in finals]
        respond = chat_response if kind == "chat" else text_response
        completions = [f.completion for f in finals]
        return respond(completions, logprobs, request.n, self.cfg.served_model_name)

    def _decode_requests(
        self,
        request: ChatCompletionRequest | CompletionRequest,
        prompts: list[list[int]],
        param: str,
    ) -> list[DecodeRequest]:
        params = request.generation_params(self.cfg.params)
        calls = []
        for i, prompt in enumerate(prompts):
            name = param if len(prompts) == 1 else f"{param}.{i}"
            budget = self.encoder.completion_budget(
                prompt, params.max_new_tokens, request.max_tokens_given, name
            )
            fitted = params.model_copy(update={"max_new_tokens": budget})
            logprobs = request.top_logprobs_k
            calls += [
                DecodeRequest(prompt, fitted, request.stream, seed, logprobs)
                for seed in request.choice_seeds()
            ]
        return calls

    # -- calling the model deployment ----------------------------------------------------

    async def _generate(self, calls: list[DecodeRequest]) -> list[StepEvent]:
        try:
            return await asyncio.gather(*(self.model.generate.remote(c) for c in calls))
        except Exception as e:
            self._raise_if_overload(e)
            raise

    async def _stream(
        self, kind: Literal["chat", "text"], calls: list[DecodeRequest], n: int, with_usage: bool
    ) -> StreamingResponse:
        method = self.model.options(stream=True).generate_stream
        streams = []
        try:  # each stream's first event says it was admitted: rejections become a status
            for call in calls:
                streams.append(method.remote(call))
            await asyncio.gather(*(s.__anext__() for s in streams))
        except Exception as e:
            # not s.cancel(): it waits (blocking) for the request's assignment and re-raises
            # its error; an admitted sibling of a rejected choice just runs to its end
            self._raise_if_overload(e)
            raise
        writer = ChunkWriter(kind, self.cfg.served_model_name)
        events = merge_streams(streams)
        body = sse_body(writer, events, self.strings, len(calls), n, with_usage)
        return StreamingResponse(body, media_type="text/event-stream")

    def _raise_if_overload(self, error: BaseException) -> None:
        """Ray Serve's backpressure rejection, as an OpenAI-style 503/429."""
        rejection = reject_overload(error)
        if rejection is not None:
            self.rejected += 1
            raise rejection from error

    def _check_choices(self, choices: int) -> None:
        if choices > self.cfg.max_choices:
            raise APIError(
                400,
                f"n: {choices} choices asked for (n times the prompts); this server returns "
                f"at most {self.cfg.max_choices} per request (serve.max_choices)",
                param="n",
            )

    def _check_model(self, model: str) -> None:
        if model != self.cfg.served_model_name:
            raise APIError(
                404,
                f"model {model!r} does not exist; served: {self.cfg.served_model_name!r}",
                param="model",
                code="model_not_found",
            )

    def _card(self) -> dict[str, Any]:
        return {
            "id": self.cfg.served_model_name,
            "object": "model",
            "created": self.created,
            "owned_by": "agentray",
            "root": self.cfg.model,
        }


# -- building, starting and stopping -----------------------------------------------------


def build_app(cfg: ServeConfig) -> serve.Application:
    """The Serve application for ``cfg.backend``: ``hf`` (ingress + HF model deployment) or
    ``vllm`` (``ray.serve.llm``)."""
    if cfg.backend == "vllm":
        from agentray.serve.vllm import build_vllm_app

        return build_vllm_app(cfg)
    config = cfg.model_dump(mode="json", exclude={"api_key"})
    model = HFModelServer.options(**model_deployment_options(cfg)).bind(config)
    ingress = OpenAIIngress.options(**ingress_deployment_options(cfg))
    return ingress.bind(model, config, resolve_api_key(cfg))


def model_deployment_options(cfg: ServeConfig) -> dict[str, Any]:
    actor = {"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus}
    if cfg.resources:
        actor["resources"] = dict(cfg.resources)
    if cfg.accelerator_type:
        actor["accelerator_type"] = cfg.accelerator_type
    options: dict[str, Any] = {
        "max_ongoing_requests": cfg.max_ongoing_requests,
        "max_queued_requests": cfg.max_queued_requests,
        "ray_actor_options": actor,
        "logging_config": {"enable_access_log": cfg.access_log},
    }
    if cfg.max_queued_requests != -1:
        options["backpressure_config"] = {
            "status_code": cfg.overload_status_code,
            "retry_after_s": cfg.retry_after_s,
        }
    return {**options, **cfg.scaling()}


def ingress_deployment_options(cfg: ServeConfig) -> dict[str, Any]:
    """Each ingress replica holds the requests of the model replicas plus its own queue (and
    answers rejections), so it never becomes the bottleneck that queues invisibly."""
    replicas = cfg.autoscaling.max_replicas if cfg.autoscaling else cfg.num_replicas
    queue = cfg.max_queued_requests if cfg.max_queued_requests != -1 else 10_000
    return {
        "num_replicas": cfg.ingress_replicas,
        "max_ongoing_requests": 2 * (replicas * cfg.max_ongoing_requests + queue) + 64,
        "ray_actor_options": {"num_cpus": cfg.ingress_num_cpus},
        "logging_config": {"enable_access_log": cfg.access_log},
    }


def start_server(cfg: ServeConfig) -> str:
    """Deploy the app (starting Ray and Serve if needed); returns the base URL clients use,
    e.g. ``http://127.0.0.1:8000/v1``, once ``/v1/models`` answers."""
    from agentray.ray_utils import ensure_ray

    ensure_ray()
    app = build_app(cfg)  # config errors (e.g. vllm missing) before Serve starts
    check_serve_address(cfg)
    serve.start(
        proxy_location=cfg.proxy_location, http_options={"host": cfg.host, "port": cfg.port}
    )
    serve.run(app, name=cfg.app_name, route_prefix=cfg.route_prefix)
    wait_until_ready(cfg.base_url, cfg.startup_timeout_s, resolve_api_key(cfg))
    return cfg.base_url


def check_serve_address(cfg: ServeConfig) -> None:
    """Serve keeps the host and port it first started with on a cluster and ignores new
    ones: asking for others would only time out later, so fail now, saying what runs."""
    # Ray Serve has no public call for the running controller's HTTP options.
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return
    running = client.http_config
    if (running.host, running.port) != (cfg.host, cfg.port):
        raise ServeAddressError(
            f"Ray Serve already runs on this cluster at {running.host}:{running.port} and "
            f"keeps that address; serve.host/serve.port ask for {cfg.host}:{cfg.port}. Set "
            f"serve.port: {running.port} (and serve.host: {running.host}), or stop Serve "
            "first (`serve shutdown`)"
        )


class ServeAddressError(RuntimeError):
    """Serve already listens elsewhere on this cluster."""


def stop_server(name: str = "agentray", shutdown: bool = False) -> None:
    """Delete the app; ``shutdown`` also stops Serve's controller and HTTP proxies."""
    serve.delete(name)
    if shutdown:
        serve.shutdown()


def wait_until_ready(base_url: str, timeout_s: float, api_key: str | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    request = urllib.request.Request(f"{base_url}/models", headers=headers)
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except Exception as e:  # not up yet
            last_error = e
        time.sleep(0.25)
    raise TimeoutError(
        f"{base_url}/models did not answer within {timeout_s}s ({last_error!r}); if Serve was "
        "already running on this cluster, it keeps its first host/port"
    )


def run_serve(cfg: ServeConfig, run_dir: str, block: bool = True) -> str:
    """The ``agentray serve`` stage: start, record the URL in ``<run_dir>/serve/manifest.json``,
    and with ``block`` serve until Ctrl-C."""
    from agentray.manifest import write_manifest

    started = time.time()
    url = start_server(cfg)
    outputs = {
        "url": url,
        "served_model_name": cfg.served_model_name,
        "app_name": cfg.app_name,
        "backend": cfg.backend,
        "auth": resolve_api_key(cfg) is not None,
    }
    write_manifest(
        storage.join(run_dir, "serve"),
        "serve",
        cfg,
        inputs={"model": cfg.model},
        outputs=outputs,
        started_at=started,
    )
    if not block:
        return url
    print(json.dumps({"serving": url, "model": cfg.served_model_name}), flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        stop_server(cfg.app_name)
    return url
