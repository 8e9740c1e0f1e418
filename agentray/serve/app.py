"""Ray Serve app: an OpenAI-compatible chat API over a local HF checkpoint.

Each replica hosts one ``HFPolicy``; concurrent requests are gathered by ``@serve.batch``
into one batched ``generate`` call (the policy's own code, shared with the rollout engine).
"""

import asyncio
import json
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from agentray.serve.config import ServeConfig
from agentray.types import Completion, GenerationParams

# -- the OpenAI request schema (the subset this server honours) --------------------------


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send fields we do not use (user, seed)

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)  # newer clients' name for max_tokens
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1, description="one choice per request")
    stream: Literal[False] = Field(False, description="streaming is not supported")

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str]:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    def generation_params(self, defaults: GenerationParams) -> GenerationParams:
        given = {
            "max_new_tokens": self.max_completion_tokens or self.max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop or None,
        }
        return defaults.model_copy(update={k: v for k, v in given.items() if v is not None})


# -- OpenAI-style errors -----------------------------------------------------------------


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code


def error_response(
    status: int, message: str, type: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(status_code=status, content=body)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    return (f"{param}: {first['msg']}" if param else first["msg"]), param


api = FastAPI(title="agentray", description="OpenAI-compatible chat completions")


@api.exception_handler(APIError)
async def _api_error(_: Request, exc: APIError) -> JSONResponse:
    return error_response(exc.status, exc.message, exc.type, exc.param, exc.code)


@api.exception_handler(RequestValidationError)
async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    message, param = _validation_message(exc)
    return error_response(400, message, "invalid_request_error", param, "invalid_value")


@api.exception_handler(StarletteHTTPException)
async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
    return error_response(exc.status_code, str(exc.detail), kind)


@api.exception_handler(Exception)
async def _server_error(_: Request, exc: Exception) -> JSONResponse:
    return error_response(500, f"{type(exc).__name__}: {exc}", "server_error")


# -- the deployment ----------------------------------------------------------------------
# Serve pickles the deployment class when it is decorated: helpers it calls come first.


def _group_by_params(items: list[tuple[list[int], GenerationParams]]) -> dict[str, list[int]]:
    """Row indices per distinct generation params: one generate call per group."""
    groups: dict[str, list[int]] = {}
    for i, (_, params) in enumerate(items):
        groups.setdefault(params.model_dump_json(), []).append(i)
    return groups


@serve.deployment
@serve.ingress(api)
class ChatServer:
    def __init__(self, config: dict[str, Any]) -> None:
        from agentray.policies.hf import HFPolicy

        self.cfg = ServeConfig(**config)
        self.policy = HFPolicy(
            self.cfg.model,
            device=self.cfg.device,
            max_batch_size=self.cfg.max_batch_size,
            dtype=self.cfg.dtype,
        )
        self.generate_batch.set_max_batch_size(self.cfg.max_batch_size)
        self.generate_batch.set_batch_wait_timeout_s(self.cfg.batch_wait_timeout_s)
        self.created = int(time.time())
        self.stats = {"requests": 0, "batches": 0, "largest_batch": 0}

    @api.get("/health")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/stats")
    async def get_stats(self) -> dict[str, int]:
        """This replica's request and batch counts (how well requests are batched)."""
        return self.stats

    @api.get("/v1/models")
    async def models(self) -> dict[str, Any]:
        card = {
            "id": self.cfg.served_model_name,
            "object": "model",
            "created": self.created,
            "owned_by": "agentray",
            "root": self.cfg.model,
        }
        return {"object": "list", "data": [card]}

    @api.post("/v1/chat/completions")
    async def chat_completions(self, request: ChatCompletionRequest) -> dict[str, Any]:
        if request.model != self.cfg.served_model_name:
            raise APIError(
                404,
                f"model {request.model!r} does not exist; served: {self.cfg.served_model_name!r}",
                param="model",
                code="model_not_found",
            )
        params = request.generation_params(self.cfg.params)
        prompt = self._encode(request, params)
        completion: Completion = await self.generate_batch((prompt, params))
        if completion.finish_reason == "error":
            raise APIError(500, completion.error or "generation failed", type="server_error")
        return self._response(completion)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def generate_batch(
        self, items: list[tuple[list[int], GenerationParams]]
    ) -> list[Completion]:
        self.stats["batches"] += 1
        self.stats["requests"] += len(items)
        self.stats["largest_batch"] = max(self.stats["largest_batch"], len(items))
        out: list[Completion | None] = [None] * len(items)
        for params_json, rows in _group_by_params(items).items():
            params = GenerationParams.model_validate_json(params_json)
            prompts = [items[i][0] for i in rows]
            completions = await asyncio.to_thread(self.policy.generate_ids, prompts, params)
            for i, completion in zip(rows, completions, strict=True):
                out[i] = completion
        return [c for c in out if c is not None]

    def _encode(self, request: ChatCompletionRequest, params: GenerationParams) -> list[int]:
        messages = [m.model_dump() for m in request.messages]
        try:
            prompt = self.policy.encode(messages)
        except Exception as e:  # e.g. the chat template rejects the role order
            raise APIError(400, f"messages: {e}", param="messages") from e
        try:
            self.policy.check_fits(len(prompt), params.max_new_tokens)
        except ValueError as e:
            raise APIError(400, str(e), param="messages", code="context_length_exceeded") from e
        return prompt

    def _response(self, completion: Completion) -> dict[str, Any]:
        message = {"role": "assistant", "content": completion.text}
        choice = {
            "index": 0,
            "message": message,
            "finish_reason": completion.finish_reason,
            "logprobs": None,
        }
        usage = {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        }
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.cfg.served_model_name,
            "choices": [choice],
            "usage": usage,
        }


# -- starting and stopping ---------------------------------------------------------------


def build_app(cfg: ServeConfig) -> serve.Application:
    options: dict[str, Any] = {
        "max_ongoing_requests": cfg.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": cfg.num_cpus, "num_gpus": cfg.num_gpus},
        "logging_config": {"enable_access_log": cfg.access_log},
    }
    if cfg.autoscaling:
        options["autoscaling_config"] = cfg.autoscaling.model_dump()
    else:
        options["num_replicas"] = cfg.num_replicas
    return ChatServer.options(**options).bind(cfg.model_dump(mode="json"))


def start_server(cfg: ServeConfig) -> str:
    """Deploy the app (starting Ray and Serve if needed); returns the base URL clients use,
    e.g. ``http://127.0.0.1:8000/v1``, once ``/v1/models`` answers."""
    from agentray.ray_utils import ensure_ray

    ensure_ray()
    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    serve.run(build_app(cfg), name=cfg.app_name, route_prefix=cfg.route_prefix)
    wait_until_ready(cfg.base_url, cfg.startup_timeout_s)
    return cfg.base_url


def stop_server(name: str = "agentray", shutdown: bool = False) -> None:
    """Delete the app; ``shutdown`` also stops Serve's controller and HTTP proxies."""
    serve.delete(name)
    if shutdown:
        serve.shutdown()


def wait_until_ready(base_url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=5) as response:
                if response.status == 200:
                    return
        except Exception as e:  # not up yet
            last_error = e
        time.sleep(0.25)
    raise TimeoutError(
        f"{base_url}/models did not answer within {timeout_s}s ({last_error!r}); if Serve was "
        "already running on this cluster, it keeps its first host/port"
    )


def run_serve(cfg: ServeConfig, run_dir: str | Path, block: bool = True) -> str:
    """The ``agentray serve`` stage: start, record the URL in ``<run_dir>/serve/manifest.json``,
    and with ``block`` serve until Ctrl-C."""
    from agentray.manifest import write_manifest

    started = time.time()
    url = start_server(cfg)
    outputs = {"url": url, "served_model_name": cfg.served_model_name, "app_name": cfg.app_name}
    write_manifest(
        Path(run_dir) / "serve",
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
