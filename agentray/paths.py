"""Where agentray keeps what it builds or downloads once per machine (the tiny model, env
assets): ``$AGENTRAY_HOME``, default ``~/.cache/agentray``. A node-local cache: run
artifacts never go here."""

from __future__ import annotations

import os
import re
from pathlib import Path

# Set by Ray in the environment of a job's driver (``ray job submit``).
RAY_JOB_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


def default_home() -> Path:
    return Path(os.environ.get("AGENTRAY_HOME", Path.home() / ".cache" / "agentray"))


def in_ray_job() -> bool:
    """Whether this process is the driver of a Ray job (``ray job submit``)."""
    return RAY_JOB_ENV in os.environ


def check_run_dir(run_dir: str) -> str:
    """``run_dir`` if agentray can write there; raises ValueError saying what to use instead.

    A URI (``s3://bucket/prefix``) is storage every node reaches. A relative path is refused
    inside a Ray job: the job's working directory is its unpacked package, which Ray
    deletes later."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", run_dir):
        return run_dir
    if in_ray_job() and not Path(run_dir).expanduser().is_absolute():
        raise ValueError(
            f"{run_dir!r} is relative, and this is a Ray job: it would resolve inside the "
            f"job's package folder ({Path.cwd()}), which Ray deletes later; pass an absolute "
            "path on storage every node sees or an object store URI, e.g. --run-dir "
            "/mnt/shared/runs/x or --run-dir s3://bucket/runs/x"
        )
    return run_dir
