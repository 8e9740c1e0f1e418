"""Policy backends by name, and the typed config every stage uses to build one."""

from __future__ import annotations

import inspect
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agentray.model.tiny import TINY_MODEL
from agentray.policies.base import Policy
from agentray.registry import Registry
from agentray.types import GenerationParams

POLICIES: dict[str, str] = {
    "expert": "agentray.policies.expert:ExpertPolicy",
    "openai": "agentray.policies.openai:OpenAIPolicy",
    "hf": "agentray.policies.hf:HFPolicy",
    "vllm": "agentray.policies.vllm:VLLMPolicy",  # GPU + pip install 'agentray[vllm]'
}


BACKENDS: Registry[Policy] = Registry("policy backend", POLICIES)


def policy_names() -> list[str]:
    return BACKENDS.names()


def policy_class(name: str) -> type[Policy]:
    return BACKENDS.get(name)


class PolicyConfig(BaseModel):
    """Which backend continues the conversations, and how it generates."""

    model_config = ConfigDict(extra="forbid")

    backend: str = Field("expert", description=f"one of {', '.join(POLICIES)}")
    model: str | None = Field(
        None, description=f"hf: path or hub name (default {TINY_MODEL}); openai: model name"
    )
    params: GenerationParams = Field(default_factory=GenerationParams)
    # openai
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. .../v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="env variable holding the API key")
    max_concurrency: int = Field(16, gt=0, description="requests in flight per policy")
    timeout_s: float = Field(60.0, gt=0, description="per request attempt, seconds")
    max_retries: int = Field(
        3,
        ge=0,
        description="retries per request on 429 / 408 / 409 / 5xx / timeouts / connection errors",
    )
    retry_backoff_s: float = Field(
        1.0,
        gt=0,
        description="first retry's backoff; doubles per retry, jittered (Retry-After wins)",
    )
    retry_backoff_max_s: float = Field(30.0, gt=0, description="longest backoff between retries")
    requests_per_minute: float | None = Field(
        None, gt=0, description="request rate limit per policy instance (None: unlimited)"
    )
    tokens_per_minute: float | None = Field(
        None,
        gt=0,
        description="token rate limit per policy instance: prompt estimate + max_new_tokens "
        "reserved per request, settled to the reported usage (None: unlimited)",
    )
    price_per_1m_input: float = Field(
        0.0, ge=0, description="USD per 1M prompt tokens, for cost accounting (GPT-4 8k: 30)"
    )
    price_per_1m_output: float = Field(
        0.0, ge=0, description="USD per 1M completion tokens, for cost accounting (GPT-4 8k: 60)"
    )
    # hf
    device: str = Field("cpu", description="torch device, e.g. cpu, cuda")
    dtype: str = Field("auto", description="torch dtype name, or auto (the checkpoint's)")
    max_batch_size: int = Field(32, gt=0, description="conversations per model.generate call")
    # expert
    families: list[str] | None = Field(None, description="env families the expert knows")
    family_configs: dict[str, dict[str, Any]] | None = Field(
        None, description="expert: the families' settings (collect passes its own by default)"
    )

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in POLICIES:
            raise ValueError(f"unknown policy backend {value!r}; allowed: {policy_names()}")
        return value

    @model_validator(mode="after")
    def _model_for_backend(self) -> PolicyConfig:
        if self.backend == "openai" and not self.model:
            raise ValueError("backend 'openai' needs a model name (e.g. gpt-4)")
        return self


def policy_kwargs(cfg: PolicyConfig) -> dict[str, Any]:
    """The config fields that ``cfg.backend``'s constructor takes (unset ones keep the
    constructor's default), so a new backend needs only its line in ``POLICIES``."""
    accepted = inspect.signature(policy_class(cfg.backend).__init__).parameters
    values = cfg.model_dump(exclude={"backend", "params"}, exclude_none=True)
    return {key: value for key, value in values.items() if key in accepted}


def make_policy(cfg: PolicyConfig) -> Policy:
    return policy_class(cfg.backend)(**policy_kwargs(cfg))
