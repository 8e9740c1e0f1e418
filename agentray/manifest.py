"""Every stage writes its outputs plus a ``manifest.json`` into its folder of the run dir."""

from __future__ import annotations

import functools
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from agentray import storage

_PACKAGES = ("agentray", "ray", "torch", "transformers", "deepspeed", "datasets", "openai")


@functools.cache
def code_version() -> str:
    """``git describe`` of the checkout agentray runs from, else the package version."""
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        described = None
    if described is not None and described.returncode == 0 and described.stdout.strip():
        return f"git {described.stdout.strip()}"
    try:
        return f"agentray {metadata.version('agentray')}"
    except metadata.PackageNotFoundError:
        return "unknown"


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "code": code_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_manifest(
    stage_dir: str | Path,
    stage: str,
    config: BaseModel | dict[str, Any],
    inputs: dict[str, Any] | None = None,
    counts: dict[str, Any] | None = None,
    outputs: dict[str, Any] | None = None,
    started_at: float | None = None,
    failure: dict[str, Any] | None = None,
) -> str:
    """Writes ``<stage_dir>/manifest.json`` (a path or URI); returns its location.
    ``status`` is ``failed`` when the stage ended with ``failure`` (what failed), else ``ok``."""
    cfg = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    manifest = {
        "stage": stage,
        "status": "failed" if failure else "ok",
        "failure": failure,
        "config": cfg,
        "inputs": inputs or {},
        "outputs": outputs or {},
        "counts": counts or {},
        "versions": versions(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_s": round(time.time() - started_at, 2) if started_at else None,
    }
    return storage.write_json(storage.join(stage_dir, "manifest.json"), manifest)


def read_manifest(stage_dir: str | Path) -> dict[str, Any]:
    return storage.read_json(storage.join(stage_dir, "manifest.json"))
