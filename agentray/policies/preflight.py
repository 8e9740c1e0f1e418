"""The preflight check of an OpenAI-compatible endpoint, before a stage does any work.

With the stock ``openai`` client, a short timeout and one retry at most: list the models
(the endpoint answers, the key is accepted, the URL is an OpenAI API), then one tiny
request to the configured model (1 token). Any failure raises ``EndpointUnavailable``
with the URL and the error, in seconds, instead of a run of failed episodes.

A 429 on the tiny request passes (the endpoint is there, only busy: the policy's own
retries deal with that), unless it says the quota is used up.
"""

from __future__ import annotations

import time
from typing import Any

import openai

from agentray.failures import EndpointUnavailable, one_line
from agentray.policies.config import OpenAIConfig
from agentray.policies.openai import resolve_api_key

PREFLIGHT_TIMEOUT_S = 10.0
# the tiny request's conversation (stand-in test endpoints answer it "OK")
PREFLIGHT_MESSAGES = [{"role": "user", "content": "agentray preflight check: reply OK."}]
DEFAULT_URL = "https://api.openai.com/v1"


def check_endpoint(cfg: OpenAIConfig, role: str = "policy") -> dict[str, Any]:
    """Raise ``EndpointUnavailable`` unless ``cfg``'s endpoint lists its models and answers
    a 1-token request for ``cfg.model``; returns what it found (url, models listed,
    seconds). ``role`` names the endpoint in the message (policy, teacher, judge)."""
    url = cfg.base_url or DEFAULT_URL
    started = time.perf_counter()
    try:
        key = resolve_api_key(cfg.api_key_env, cfg.base_url)
    except ValueError as e:
        raise EndpointUnavailable(url, str(e), role) from None
    client = openai.OpenAI(
        api_key=key,
        base_url=cfg.base_url,
        timeout=min(cfg.timeout_s, PREFLIGHT_TIMEOUT_S),
        max_retries=1,
    )
    try:
        models = _list_models(client, url, role)
        _tiny_request(client, cfg.model, url, role, models)
    finally:
        client.close()
    return {"url": url, "models": models, "seconds": round(time.perf_counter() - started, 3)}


def _list_models(client: openai.OpenAI, url: str, role: str) -> list[str]:
    try:
        return [m.id for m in client.models.list().data]
    except openai.NotFoundError as e:
        hint = " (is base_url the API root, e.g. .../v1?)"
        raise EndpointUnavailable(url, f"GET /models: {_error(e)}{hint}", role) from None
    except openai.OpenAIError as e:
        raise EndpointUnavailable(url, f"GET /models: {_error(e)}", role) from None


def _tiny_request(
    client: openai.OpenAI, model: str, url: str, role: str, models: list[str]
) -> None:
    try:
        client.chat.completions.create(
            model=model, messages=PREFLIGHT_MESSAGES, max_tokens=1, temperature=0.0
        )
    except openai.RateLimitError as e:
        if "quota" in str(e).lower():
            raise EndpointUnavailable(url, f"model {model!r}: {_error(e)}", role) from None
    except openai.OpenAIError as e:
        served = f" (it lists: {', '.join(models[:10]) or 'no models'})"
        unknown = model not in models and isinstance(e, openai.APIStatusError)
        raise EndpointUnavailable(
            url, f"model {model!r}: {_error(e)}{served if unknown else ''}", role
        ) from None


def _error(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}"
    root = e
    while root.__cause__ is not None:
        root = root.__cause__
    if root is not e:  # what the transport saw (refused, DNS, ...)
        text += f" ({type(root).__name__}: {root})"
    return one_line(text, limit=400)
