"""Calls whose names differ across transformers versions: transformers 5.x renamed a
model's ``past_key_values`` argument and output to ``cache`` (the old name warns, and goes
in 5.40 for ``forward``, 6.0 for ``generate``)."""

from __future__ import annotations

import inspect
from typing import Any

_CACHE_KWARG: dict[type, str] = {}
_DECODES_ITSELF: dict[type, bool] = {}


def cache_kwarg(model: Any) -> str:
    """The name ``model.forward`` (and ``generate``) takes its KV cache by: ``cache`` in
    recent transformers, ``past_key_values`` before."""
    kind = type(model)
    if kind not in _CACHE_KWARG:
        names = inspect.signature(model.forward).parameters
        _CACHE_KWARG[kind] = "cache" if "cache" in names else "past_key_values"
    return _CACHE_KWARG[kind]


def decodes_itself(model: Any) -> bool:
    """Whether ``model.generate`` takes a decoding loop (``custom_generate`` as a callable,
    newer transformers: it prepares the processors and stopping criteria, the loop runs the
    steps); looked up once per model type."""
    kind = type(model)
    if kind not in _DECODES_ITSELF:
        param = inspect.signature(model.generate).parameters.get("custom_generate")
        _DECODES_ITSELF[kind] = param is not None and "Callable" in str(param.annotation)
    return _DECODES_ITSELF[kind]


def output_cache(output: Any) -> Any:
    """The KV cache a forward pass returned (``cache``, or ``past_key_values`` before)."""
    # not .get(): its default would read the deprecated attribute even when unused
    return output["cache"] if "cache" in output else output.past_key_values  # noqa: SIM401
