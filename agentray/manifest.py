"""Every stage writes its outputs plus a ``manifest.json`` into its folder of the run dir."""

from __future__ import annotations

import json
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel

_PACKAGES = ("agentray", "ray", "torch", "transformers", "deepspeed", "datasets", "openai")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
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
) -> Path:
    stage_dir = Path(stage_dir)
    stage_dir.mkdir(parents=True, exist_ok=True)
    cfg = config.model_dump(mode="json") if isinstance(config, BaseModel) else config
    manifest = {
        "stage": stage,
        "config": cfg,
        "inputs": inputs or {},
        "outputs": outputs or {},
        "counts": counts or {},
        "versions": versions(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_s": round(time.time() - started_at, 2) if started_at else None,
    }
    path = stage_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=2, default=str))
    return path


def read_manifest(stage_dir: str | Path) -> dict[str, Any]:
    return json.loads((Path(stage_dir) / "manifest.json").read_text())
