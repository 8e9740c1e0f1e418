"""The serve stage: an OpenAI-compatible API on Ray Serve (``/v1/chat/completions`` and
``/v1/completions``, streamed or not, ``/v1/models``), HF with dynamic batching or vLLM.

``ServeConfig`` is importable without Ray; the functions load Ray Serve on first use.
"""

from __future__ import annotations

from typing import Any

from agentray.serve.config import AutoscalingSettings, ServeConfig

__all__ = [
    "AutoscalingSettings",
    "ServeConfig",
    "build_app",
    "run_serve",
    "start_server",
    "stop_server",
]

_APP_NAMES = {"build_app", "run_serve", "start_server", "stop_server"}


def __getattr__(name: str) -> Any:
    if name in _APP_NAMES:
        from agentray.serve import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
