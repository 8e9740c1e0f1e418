"""One registry shape for everything agentray builds by name (env families, policy backends,
general eval suites): a name maps to ``"module:Class"``, imported only when first used, so
listing names never imports a heavy backend."""

from __future__ import annotations

import importlib
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> lazily imported classes. ``kind`` names the thing in error messages."""

    def __init__(self, kind: str, entries: dict[str, str]) -> None:
        self.kind = kind
        self._entries = dict(entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def target(self, name: str) -> str:
        """The ``module:Class`` behind ``name``."""
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}")
        return self._entries[name]

    def get(self, name: str) -> type[T]:
        module, cls = self.target(name).split(":")
        return getattr(importlib.import_module(module), cls)
