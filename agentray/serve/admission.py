"""Admission control of the ingress: a completion request beyond what the model replicas
hold is answered 503 (or 429) before its body is read, validated or tokenized, and before it
queues anywhere, so under overload a rejection costs the ingress almost nothing and comes in
milliseconds.

The limit counts HTTP requests in flight on one ingress replica (streams until their last
byte). Ray Serve's own backpressure on the model deployment stays as the second line: a
request with several choices (``n``, a list of prompts) takes several model slots, and
those beyond the model's queue are rejected when they are sent.
"""

from __future__ import annotations

import json
import math
from typing import Any

from agentray.serve.config import ServeConfig
from agentray.serve.protocol import error_body

GUARDED = "/completions"  # chat and text completions; the rest (models, health) is never refused


def admission_limit(cfg: ServeConfig) -> int:
    """Completion requests one ingress replica admits at once: its share of the model
    replicas' slots plus its queue (-1: no limit)."""
    if cfg.max_queued_requests == -1:
        return -1
    replicas = cfg.autoscaling.max_replicas if cfg.autoscaling else cfg.num_replicas
    share = -(-replicas * cfg.max_ongoing_requests // cfg.ingress_replicas)
    return share + cfg.max_queued_requests


class Admission:
    """How many completion requests this ingress replica admits at once, and its counts."""

    def __init__(self, limit: int, status: int = 503, retry_after_s: float | None = None) -> None:
        self.limit = limit  # -1: no limit
        self.in_flight = 0
        self.rejected = 0
        self.status = status
        body = error_body(
            f"server overloaded: {limit} requests in flight on this replica, retry later",
            "requests" if status == 429 else "server_error",
            code="rate_limit_exceeded" if status == 429 else "overloaded",
        )
        self.body = json.dumps(body).encode()
        self.headers = [(b"content-type", b"application/json")]
        if retry_after_s:
            self.headers.append((b"retry-after", str(math.ceil(retry_after_s)).encode()))

    def admit(self) -> bool:
        if self.limit != -1 and self.in_flight >= self.limit:
            self.rejected += 1
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        self.in_flight -= 1


class AdmissionMiddleware:
    """Pure ASGI middleware: reads the replica's ``Admission`` from ``app.state.admission``
    (none: admits everything)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        admission: Admission | None = getattr(scope["app"].state, "admission", None)
        guarded = (
            scope["type"] == "http"
            and scope.get("method") == "POST"
            and scope["path"].rstrip("/").endswith(GUARDED)
        )
        if admission is None or not guarded:
            await self.app(scope, receive, send)
            return
        if not admission.admit():
            await _reject(admission, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            admission.release()


async def _reject(admission: Admission, send: Any) -> None:
    length = (b"content-length", str(len(admission.body)).encode())
    start = {"type": "http.response.start", "status": admission.status}
    await send({**start, "headers": [*admission.headers, length]})
    await send({"type": "http.response.body", "body": admission.body})
