"""The OpenAI wire format as the stand-in endpoints speak it: request bodies in, chat
completion and error bodies out."""

from __future__ import annotations

import functools
import time
import uuid
from typing import Any

import pydantic_core
from starlette.requests import Request
from starlette.responses import JSONResponse

from agentray.policies.preflight import PREFLIGHT_MESSAGES
from agentray.types import Message

PREFLIGHT_REPLY = "OK"


def is_preflight(messages: list[dict[str, Any]]) -> bool:
    """Whether a request is a stage's preflight check (which a stand-in answers "OK")."""
    return [(m["role"], m["content"]) for m in messages] == [
        (m["role"], m["content"]) for m in PREFLIGHT_MESSAGES
    ]


@functools.lru_cache(maxsize=1024)
def approx_tokens(text: str) -> int:
    """Whitespace-separated words: the endpoint's (approximate) token count. Cached: a
    conversation's earlier messages, and every episode's instruction, come back each turn."""
    return len(text.split())


# -- the expert behind the HTTP API ------------------------------------------------------


async def json_body(request: Request) -> Any:
    """The request's JSON body (None if it is not JSON), parsed by pydantic-core: a
    fraction of the ``json`` module's CPU, which the client it serves in a benchmark shares."""
    try:
        return pydantic_core.from_json(await request.body())
    except ValueError:
        return None


class FastJSONResponse(JSONResponse):
    """A JSONResponse rendered by pydantic-core: the same compact UTF-8 JSON."""

    def render(self, content: Any) -> bytes:
        return pydantic_core.to_json(content)


def request_messages(body: Any) -> list[Message] | None:
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages:
        return None
    ok = all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages
    )
    return [{"role": m["role"], "content": m["content"]} for m in messages] if ok else None


def error_response(
    status: int,
    message: str,
    type: str = "invalid_request_error",
    code: str | None = None,
    headers: dict[str, str] | None = None,
    param: str | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "code": code, "param": param}}
    return JSONResponse(body, status_code=status, headers=headers)


def chat_completion_body(model: str, text: str, prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
