"""The expert endpoint's CLI in a child process, so the server has its own interpreter
(benchmarks, the CLI tests)."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from typing import Any

from agentray.http_serving import announced_url
from agentray.testing.expert_endpoint import READY_LINE, EndpointConfig, endpoint_config


def fetch_stats(url: str) -> dict[str, Any]:
    """``GET /stats`` of an endpoint at ``url`` (with or without the ``/v1`` suffix)."""
    root = url.removesuffix("/").removesuffix("/v1")
    with urllib.request.urlopen(f"{root}/stats", timeout=10) as response:
        return json.loads(response.read())


class EndpointProcess:
    """The CLI in a child process, so the server has its own interpreter (benchmarks)."""

    def __init__(self, config: EndpointConfig | None = None, **overrides: Any) -> None:
        self.config = endpoint_config(config, overrides)
        self._proc: subprocess.Popen | None = None
        self.url = ""

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def start(self, timeout_s: float = 120.0) -> EndpointProcess:
        cmd = [sys.executable, "-m", "agentray.testing.expert_endpoint"]
        self._proc = subprocess.Popen(
            [*cmd, "--config-json", self.config.model_dump_json()],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = announced_url(self._proc, READY_LINE, timeout_s) or ""
        if not self.url:
            self.stop()
            raise RuntimeError("expert endpoint process did not start")
        return self

    def stats(self) -> dict[str, Any]:
        return fetch_stats(self.url)

    def cpu_s(self) -> float:
        """The server process's CPU seconds so far (user + system, all threads)."""
        import psutil  # installed with ray[default]

        assert self._proc is not None, "not started"
        times = psutil.Process(self._proc.pid).cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> EndpointProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
