"""One registry shape for everything agentray builds by name (env families, policy backends,
general eval suites): a name maps to ``"module:Class"``, imported only when first used, so
listing names never imports a heavy backend."""

from __future__ import annotations

import importlib
from typing import Any, Generic, TypeVar

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
        """The ``module:Class`` behind ``name`` (a ``module:Class`` name is its own)."""
        if name in self._entries:
            return self._entries[name]
        if is_import_path(name):
            return name
        raise KeyError(
            f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)} "
            "(or a 'package.module:Class' name)"
        )

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``, or the one ``name`` = ``"pkg.mod:Class"`` names."""
        module, cls = self.target(name).split(":")
        try:
            return getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError) as e:
            if name in self._entries:
                raise
            raise KeyError(f"{self.kind} {name!r} cannot be imported: {e}") from None


def is_import_path(name: str) -> bool:
    """Whether ``name`` has the form ``package.module:Class``."""
    module, _, cls = name.partition(":")
    return bool(module and cls.isidentifier()) and all(
        part.isidentifier() for part in module.split(".")
    )


def lazy_exports(targets: dict[str, str]) -> Any:
    """A module ``__getattr__`` that imports each ``module:name`` target on first use, so a
    stage's public face (its package) stays light: configs load without Ray or torch."""

    def __getattr__(name: str) -> Any:
        if name not in targets:
            raise AttributeError(name)
        module, attr = targets[name].split(":")
        return getattr(importlib.import_module(module), attr)

    return __getattr__
