"""Serve-stage config: which model, where it listens, how replicas batch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agentray.model.tiny import TINY_MODEL
from agentray.types import GenerationParams


class AutoscalingSettings(BaseModel):
    """Ray Serve autoscaling; when set, it replaces ``num_replicas``."""

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(2, gt=0)
    target_ongoing_requests: float = Field(8.0, gt=0, description="per replica")


class ServeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(
        TINY_MODEL,
        description="path for from_pretrained, e.g. <run_dir>/train/model, or a hub name",
    )
    served_model_name: str = Field("agentray", description="the model id clients send")
    app_name: str = Field("agentray", description="Ray Serve application name")
    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    route_prefix: str = "/"
    num_replicas: int = Field(1, gt=0)
    autoscaling: AutoscalingSettings | None = None
    max_batch_size: int = Field(8, gt=0, description="requests batched into one generate call")
    batch_wait_timeout_s: float = Field(0.02, ge=0, description="how long a batch waits to fill")
    max_ongoing_requests: int = Field(64, gt=0, description="per replica; backpressure beyond")
    access_log: bool = Field(False, description="log every request (Ray Serve access log)")
    num_cpus: float = Field(1.0, ge=0, description="per replica")
    num_gpus: float = Field(0.0, ge=0, description="per replica; > 0 puts the model on cuda")
    dtype: str = Field("auto", description="torch dtype name, or auto (the checkpoint's)")
    params: GenerationParams = Field(
        default_factory=GenerationParams,
        description="defaults for fields a request leaves out",
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

    @property
    def device(self) -> str:
        return "cuda" if self.num_gpus > 0 else "cpu"

    @property
    def base_url(self) -> str:
        """Where clients reach the OpenAI-compatible API, e.g. http://127.0.0.1:8000/v1."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}{self.route_prefix.rstrip('/')}/v1"
