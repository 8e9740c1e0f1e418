"""The serve stage: an OpenAI-compatible API on Ray Serve (``/v1/chat/completions`` and
``/v1/completions``, streamed or not, ``/v1/models``), HF with dynamic batching or vLLM.

``ServeConfig`` is importable without Ray; the functions load Ray Serve on first use.
"""

from __future__ import annotations

from agentray.registry import lazy_exports
from agentray.serve.config import AutoscalingSettings, ServeConfig

__all__ = [
    "AutoscalingSettings",
    "ServeConfig",
    "ServeAddressError",
    "build_app",
    "run_serve",
    "start_server",
    "stop_server",
]

__getattr__ = lazy_exports({name: f"agentray.serve.app:{name}" for name in __all__[2:]})
