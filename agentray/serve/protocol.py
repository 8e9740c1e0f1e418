"""The OpenAI wire format this server speaks: request schemas (the fields it honours),
response and stream-chunk bodies, and OpenAI-style errors."""

from __future__ import annotations

import json
import math
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentray.types import Completion, GenerationParams

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
    """Fields shared by chat and text completions."""

    model_config = ConfigDict(extra="ignore")  # clients send fields we do not use (user, seed)

    model: str
    max_tokens: int | None = Field(None, gt=0)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1, le=1, description="one choice per prompt")
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str]:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    def _max_new_tokens(self) -> int | None:
        return self.max_tokens

    def generation_params(self, defaults: GenerationParams) -> GenerationParams:
        given = {
            "max_new_tokens": self._max_new_tokens(),
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop or None,
        }
        return defaults.model_copy(update={k: v for k, v in given.items() if v is not None})

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_SamplingRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, gt=0)  # newer clients' name for max_tokens

    def _max_new_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class CompletionRequest(_SamplingRequest):
    """``prompt`` is a string, token ids, or a list of either (one choice per prompt)."""

    prompt: str | list[str] | list[int] | list[list[int]]
    echo: Literal[False] = Field(False, description="echoing the prompt is not supported")
    logprobs: None = Field(None, description="logprobs are not supported")
    suffix: None = Field(None, description="suffix is not supported")
    best_of: int = Field(1, ge=1, le=1, description="best_of > 1 is not supported")

    @field_validator("prompt")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if not value:
            raise ValueError("prompt is empty")
        return value


# -- responses ----------------------------------------------------------------------------


def usage(completions: list[Completion]) -> dict[str, int]:
    prompt = sum(c.prompt_tokens for c in completions)
    generated = sum(c.completion_tokens for c in completions)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": generated,
        "total_tokens": prompt + generated,
    }


def new_id(kind: Literal["chat", "text"]) -> str:
    return f"{'chatcmpl' if kind == 'chat' else 'cmpl'}-{uuid.uuid4().hex}"


def chat_response(completion: Completion, model: str) -> dict[str, Any]:
    choice = {
        "index": 0,
        "message": {"role": "assistant", "content": completion.text},
        "finish_reason": completion.finish_reason,
        "logprobs": None,
    }
    return {
        "id": new_id("chat"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage([completion]),
    }


def text_response(completions: list[Completion], model: str) -> dict[str, Any]:
    choices = [
        {"index": i, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None}
        for i, c in enumerate(completions)
    ]
    return {
        "id": new_id("text"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage(completions),
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

    def choice(self, index: int, text: str | None, finish_reason: str | None = None) -> str:
        """A chunk for one choice: ``text`` is the new text (chat: None for the opening
        chunk that names the role)."""
        if self.kind == "chat":
            delta = {"role": "assistant", "content": ""} if text is None else {"content": text}
            if finish_reason is not None:
                delta = {}
            body = {"index": index, "delta": delta, "finish_reason": finish_reason}
        else:
            body = {"index": index, "text": text or "", "finish_reason": finish_reason}
        body["logprobs"] = None
        return self.event({**self.base, "choices": [body]})

    def usage(self, completions: list[Completion]) -> str:
        return self.event({**self.base, "choices": [], "usage": usage(completions)})

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
