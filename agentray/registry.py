"""One registry shape for everything agentray builds by name (env families, policy backends,
general eval suites): a name maps to ``"module:Class"``, imported only when first used, so
listing names never imports a heavy backend.

Names come from three places: agentray's own table, the entry points installed packages
declare (``[project.entry-points."agentray.envs"] textworld = "mypkg.env:TextWorldEnv"``),
and run-time registrations (``register``: a config naming a ``module:Class``). Run-time
registrations live in the ``AGENTRAY_PLUGINS`` environment variable too, which every Ray
worker gets from the driver (``ray_utils.worker_env``), so a worker that builds the registry
in its own process knows the same names; the modules behind them that no installed package
holds travel to the workers as ``py_modules`` (``plugin_module_paths``)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import sys
import sysconfig
import warnings
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")

PLUGINS_ENV = "AGENTRAY_PLUGINS"


class Registry(Generic[T]):
    """Names -> lazily imported classes. ``kind`` names the thing in error messages;
    ``group`` is the entry-point group installed packages register names in."""

    def __init__(self, kind: str, entries: dict[str, str], group: str | None = None) -> None:
        self.kind = kind
        self.group = group
        self._entries = dict(entries)
        self._plugins: dict[str, str] | None = None

    def plugins(self) -> dict[str, str]:
        """Names from installed packages' entry points and run-time registrations."""
        if self._plugins is None:
            found = {**_entry_point_targets(self.group), **_registered(self.kind)}
            for name in found.keys() & self._entries.keys():
                if found[name] != self._entries[name]:
                    warnings.warn(
                        f"{self.kind} {name!r} from a plug-in ({found[name]}) is ignored: "
                        f"agentray's own {name!r} ({self._entries[name]}) keeps the name",
                        stacklevel=2,
                    )
            self._plugins = {k: v for k, v in found.items() if k not in self._entries}
        return self._plugins

    def forget_plugins(self) -> None:
        """Read the plug-ins again on next use (after ``AGENTRAY_PLUGINS`` changed)."""
        self._plugins = None

    def names(self) -> list[str]:
        return list(self._entries) + list(self.plugins())

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self.plugins()

    def target(self, name: str) -> str:
        """The ``module:Class`` behind ``name`` (a ``module:Class`` name is its own)."""
        if name in self._entries:
            return self._entries[name]
        if name in self.plugins():
            return self.plugins()[name]
        if is_import_path(name):
            return name
        raise KeyError(
            f"unknown {self.kind} {name!r}; known: {', '.join(self.names())} "
            "(or a 'package.module:Class' name)"
        )

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``, or the one ``name`` = ``"pkg.mod:Class"`` names."""
        target = self.target(name)
        try:
            return import_target(target)
        except (ImportError, AttributeError) as e:
            if name in self._entries:
                raise
            raise KeyError(f"{self.kind} {name!r} ({target}) cannot be imported: {e}") from None

    def subclass(self, name: str, base: type) -> type:
        """The class ``name`` names, which must subclass ``base``; a ``ValueError`` says why
        there is none (unknown, not importable, or another kind of class)."""
        try:
            cls = self.get(name)
        except KeyError as e:
            raise ValueError(e.args[0]) from None
        if not (isinstance(cls, type) and issubclass(cls, base)):
            where = f"{base.__module__}.{base.__qualname__}"
            article = "an" if base.__name__[0] in "AEIOU" else "a"
            raise ValueError(f"{name} is not {article} {base.__name__} subclass ({where})")
        return cls

    def register(self, name: str, target: str) -> None:
        """Makes ``name`` mean ``target`` (``module:Class``) here and in every Ray worker
        started after this (through ``AGENTRAY_PLUGINS``)."""
        if name in self._entries and self._entries[name] != target:
            raise ValueError(
                f"{self.kind} {name!r} is agentray's own ({self._entries[name]}); "
                f"{target} needs another name"
            )
        if name in self._entries:
            return
        plugins = self.plugins()
        if plugins.get(name, target) != target:
            raise ValueError(f"{self.kind} {name!r} is already {plugins[name]}, not {target}")
        plugins[name] = target
        registered = json.loads(os.environ.get(PLUGINS_ENV) or "{}")
        registered.setdefault(self.kind, {})[name] = target
        os.environ[PLUGINS_ENV] = json.dumps(registered, sort_keys=True)


@contextlib.contextmanager
def registered_for_now(registry: Registry, name: str, target: str) -> Iterator[None]:
    """``registry.register(name, target)`` inside the ``with`` block only (this process)."""
    saved_env = os.environ.get(PLUGINS_ENV)
    saved = dict(registry.plugins())
    registry.register(name, target)
    try:
        yield
    finally:
        registry._plugins = saved
        if saved_env is None:
            os.environ.pop(PLUGINS_ENV, None)
        else:
            os.environ[PLUGINS_ENV] = saved_env


def relocated_errors(errors: list[Any], *prefix: str | int) -> list[dict[str, Any]]:
    """A plug-in's own validation errors (``ValidationError.errors()``) placed under
    ``prefix`` in the config that holds its settings, for ``from_exception_data``."""
    moved = []
    for error in errors:
        entry = {"type": error["type"], "loc": (*prefix, *error["loc"]), "input": error["input"]}
        if "ctx" in error:
            entry["ctx"] = error["ctx"]
        moved.append(entry)
    return moved


def import_target(target: str) -> Any:
    """The object a ``module:name`` target names. A module that is not importable is looked
    for in the working directory too, as ``python -m`` and uvicorn do."""
    module, attr = target.split(":")
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as e:
        cwd = os.getcwd()
        if e.name != module.split(".")[0] or cwd in sys.path:
            raise
        sys.path.insert(0, cwd)
        imported = importlib.import_module(module)
    return getattr(imported, attr)


def is_import_path(name: str) -> bool:
    """Whether ``name`` has the form ``package.module:Class``."""
    module, _, cls = name.partition(":")
    return bool(module and cls.isidentifier()) and all(
        part.isidentifier() for part in module.split(".")
    )


def _entry_point_targets(group: str | None) -> dict[str, str]:
    if group is None:
        return {}
    return {ep.name: ep.value for ep in entry_points(group=group)}


def _registered(kind: str) -> dict[str, str]:
    try:
        return dict(json.loads(os.environ.get(PLUGINS_ENV) or "{}").get(kind, {}))
    except (json.JSONDecodeError, AttributeError):
        message = f"{PLUGINS_ENV} is not a JSON object of {{kind: {{name: target}}}}"
        raise ValueError(message) from None


def plugin_module_paths() -> list[str]:
    """The files or folders of the run-time registered plug-ins' top-level modules that no
    installed package holds (a module in the working directory, on PYTHONPATH): what Ray
    workers need as ``py_modules`` to import them on any node."""
    registered = json.loads(os.environ.get(PLUGINS_ENV) or "{}")
    tops = {t.split(":")[0].split(".")[0] for names in registered.values() for t in names.values()}
    return sorted(p for top in tops if (p := _uninstalled_module_path(top)) is not None)


def _uninstalled_module_path(top: str) -> str | None:
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        return None
    origin = Path(spec.origin)
    path = origin.parent if origin.name == "__init__.py" else origin
    installed = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib")}
    own = Path(__file__).resolve().parent
    if path.resolve().is_relative_to(own) or any(
        path.resolve().is_relative_to(Path(p).resolve()) for p in installed
    ):
        return None
    return str(path)


def lazy_exports(targets: dict[str, str]) -> Any:
    """A module ``__getattr__`` that imports each ``module:name`` target on first use, so a
    stage's public face (its package) stays light: configs load without Ray or torch."""

    def __getattr__(name: str) -> Any:
        if name not in targets:
            raise AttributeError(name)
        return import_target(targets[name])

    return __getattr__
