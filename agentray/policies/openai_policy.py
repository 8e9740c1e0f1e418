"""OpenAI-compatible policy: any chat-completions endpoint (GPT-4 as in the paper, a vLLM
server, or agentray's own Ray Serve app), one request per conversation, bounded concurrency."""

from __future__ import annotations

import asyncio
import os
from typing import Any
from urllib.parse import urlparse

import openai

from agentray.policies.base import Policy
from agentray.policies.hf import chat_messages
from agentray.types import Completion, GenerationParams, Message

LOCAL_HOSTS = {"localhost", "127.0.0.1", "0.0.0.0", "::1"}
PLACEHOLDER_KEY = "EMPTY"  # what local OpenAI-compatible servers accept


def is_local(base_url: str | None) -> bool:
    return bool(base_url) and urlparse(base_url).hostname in LOCAL_HOSTS


def resolve_api_key(api_key_env: str, base_url: str | None) -> str:
    key = os.environ.get(api_key_env)
    if key:
        return key
    if is_local(base_url):
        return PLACEHOLDER_KEY
    raise ValueError(
        f"environment variable {api_key_env} is not set (needed for {base_url or 'api.openai.com'})"
    )


class OpenAIPolicy(Policy):
    backend = "openai"

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        timeout_s: float = 60.0,
        max_retries: int = 3,
    ) -> None:
        from openai import AsyncOpenAI

        self.name = model
        self.model = model
        self.base_url = base_url
        self.client = AsyncOpenAI(
            api_key=resolve_api_key(api_key_env, base_url),
            base_url=base_url,
            timeout=timeout_s,
            max_retries=max_retries,
        )
        self._semaphore = asyncio.Semaphore(max_concurrency)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "backend": self.backend, "base_url": self.base_url}

    async def generate(
        self, batch: list[list[Message]], params: GenerationParams
    ) -> list[Completion]:
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
        try:
            async with self._semaphore:
                response = await self.client.chat.completions.create(**request)
        except openai.BadRequestError as e:
            reason = "context_limit" if _is_context_overflow(e) else "error"
            return Completion(text="", finish_reason=reason, error=f"{type(e).__name__}: {e}")
        except Exception as e:  # after the client's own retries: this conversation fails
            return Completion(text="", finish_reason="error", error=f"{type(e).__name__}: {e}")
        return _completion(response)

    async def aclose(self) -> None:
        await self.client.close()


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
