"""The OpenAI wire format this server speaks: request schemas (the fields it honours),
response and stream-chunk bodies, and OpenAI-style errors."""

from __future__ import annotations

import json
import math
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from agentray.types import Completion, GenerationParams

MAX_TOP_LOGPROBS = 20  # alternatives per token, as OpenAI's chat API allows

# -- requests -----------------------------------------------------------------------------


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def plain(self) -> dict[str, str]:
        """``{"role", "content"}`` for the chat template (``developer`` is the newer
        name of ``system``; text parts are joined)."""
        role = "system" if self.role == "developer" else self.role
        content = self.content
        if not isinstance(content, str):
            content = "".join(part.text for part in content)
        return {"role": role, "content": content}


class StreamOptions(BaseModel):
    include_usage: bool = False


class _SamplingRequest(BaseModel):
    """Fields shared by chat and text completions. Fields the server cannot honour are
    refused (400) when set to anything but their neutral value, never silently dropped;
    metadata (``user``, ``store``, ``metadata``, ...) is ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, description="choices per prompt, each its own sample")
    seed: int | None = Field(None, description="the same seed gives the same sample")
    stream: bool = False
    stream_options: StreamOptions | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    logit_bias: dict[str, float] | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str]:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    @field_validator("frequency_penalty", "presence_penalty", "logit_bias")
    @classmethod
    def _neutral(cls, value: Any) -> Any:
        if value:
            raise ValueError("not supported by this server (leave it out, or 0 / {})")
        return value

    def _max_new_tokens(self) -> int | None:
        return self.max_tokens

    @property
    def max_tokens_given(self) -> bool:
        return self._max_new_tokens() is not None

    def generation_params(self, defaults: GenerationParams) -> GenerationParams:
        given = {
            "max_new_tokens": self._max_new_tokens(),
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop or None,
        }
        return defaults.model_copy(update={k: v for k, v in given.items() if v is not None})

    def choice_seeds(self) -> list[int | None]:
        """The seed of each of the ``n`` choices of a prompt: ``seed``, ``seed + 1``, ...
        (each choice its own sample, each reproducible)."""
        if self.seed is None:
            return [None] * self.n
        return [(self.seed + j) % 2**64 for j in range(self.n)]

    @property
    def top_logprobs_k(self) -> int | None:
        """Alternatives per token the response reports (None: no logprobs)."""
        raise NotImplementedError

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, gt=0)  # newer clients' name for max_tokens
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: list[Any] | None = None
    response_format: dict[str, Any] | None = None

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return value

    @field_validator("tools")
    @classmethod
    def _no_tools(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise ValueError("tool calls are not supported by this server")
        return value

    @field_validator("response_format")
    @classmethod
    def _text_only(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value and value.get("type", "text") != "text":
            raise ValueError("only {'type': 'text'} is supported by this server")
        return value

    def _max_new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def top_logprobs_k(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(_SamplingRequest):
    """``prompt`` is a string, token ids, or a list of either (``n`` choices per prompt)."""

    prompt: str | list[str] | list[int] | list[list[int]]
    echo: Literal[False] = Field(False, description="echoing the prompt is not supported")
    logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    suffix: None = Field(None, description="suffix is not supported")
    best_of: int = Field(1, ge=1, le=1, description="best_of > 1 is not supported")

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if not value:
            raise ValueError("prompt is empty")
        return value

    @property
    def top_logprobs_k(self) -> int | None:
        return self.logprobs


# -- responses ----------------------------------------------------------------------------


def usage(completions: list[Completion], n: int = 1) -> dict[str, int]:
    """Token counts of a response whose choices come ``n`` per prompt: each prompt counts
    once, every choice's tokens count."""
    prompt = sum(c.prompt_tokens for c in completions[::n])
    generated = sum(c.completion_tokens for c in completions)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": generated,
        "total_tokens": prompt + generated,
    }


def new_id(kind: Literal["chat", "text"]) -> str:
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"


def chat_response(
    completions: list[Completion], logprobs: list[Any], n: int, model: str
) -> dict[str, Any]:
    """``logprobs``: each choice's logprobs object, or None."""
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": c.text},
            "finish_reason": c.finish_reason,
            "logprobs": lp,
        }
        for i, (c, lp) in enumerate(zip(completions, logprobs, strict=True))
    ]
    return {
        "id": new_id("chat"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage(completions, n),
    }


def text_response(
    completions: list[Completion], logprobs: list[Any], n: int, model: str
) -> dict[str, Any]:
    choices = [
        {"index": i, "text": c.text, "finish_reason": c.finish_reason, "logprobs": lp}
        for i, (c, lp) in enumerate(zip(completions, logprobs, strict=True))
    ]
    return {
        "id": new_id("text"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage(completions, n),
    }


class ChunkWriter:
    """Server-sent events of one streamed response, in OpenAI's chunk format."""

    def __init__(self, kind: Literal["chat", "text"], model: str) -> None:
        self.kind = kind
        self.base = {
            "id": new_id(kind),
            "object": "chat.completion.chunk" if kind == "chat" else "text_completion",
            "created": int(time.time()),
            "model": model,
        }

    def choice(
        self,
        index: int,
        text: str | None,
        finish_reason: str | None = None,
        logprobs: Any = None,
    ) -> str:
        """A chunk for one choice: ``text`` is the new text (chat: None for the opening
        chunk that names the role), ``logprobs`` those of the tokens it completes."""
        if self.kind == "chat":
            delta = {"role": "assistant", "content": ""} if text is None else {"content": text}
            if finish_reason is not None and not text:
                delta = {}
            body = {"index": index, "delta": delta, "finish_reason": finish_reason}
        else:
            body = {"index": index, "text": text or "", "finish_reason": finish_reason}
        body["logprobs"] = logprobs
        return self.event({**self.base, "choices": [body]})

    def usage(self, completions: list[Completion], n: int) -> str:
        return self.event({**self.base, "choices": [], "usage": usage(completions, n)})

    @staticmethod
    def event(body: dict[str, Any]) -> str:
        return f"data: {json.dumps(body)}\n\n"

    DONE = "data: [DONE]\n\n"


# -- errors -------------------------------------------------------------------------------


class APIError(Exception):
    """An error the client gets as ``{"error": {"message", "type", "param", "code"}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def overloaded(status: int, message: str, retry_after_s: float | None) -> APIError:
    """The rejection of a request beyond the queue: 429 as OpenAI's rate limits say it,
    or 503 as an overloaded server does; both tell the client when to retry."""
    headers = {"retry-after": str(math.ceil(retry_after_s))} if retry_after_s else None
    if status == 429:
        return APIError(429, message, "requests", None, "rate_limit_exceeded", headers)
    return APIError(503, message, "server_error", None, "overloaded", headers)
