"""Where agentray keeps what it builds or downloads once per machine (the tiny model, env
assets): ``$AGENTRAY_HOME``, default ``~/.cache/agentray``. A node-local cache: run
artifacts never go here."""

from __future__ import annotations

import os
from pathlib import Path


def default_home() -> Path:
    return Path(os.environ.get("AGENTRAY_HOME", Path.home() / ".cache" / "agentray"))
