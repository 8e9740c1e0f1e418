"""Shared fixtures: one tiny model and one local Ray cluster per test session."""

from __future__ import annotations

import os

import pytest
from ray_cluster import two_node_cluster  # noqa: F401 - a fixture for the multi-node tests

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
