"""The instruct stage's config: which families, which teacher, how many tasks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentray.policies.config import HFConfig, OpenAIConfig, VLLMConfig, policy_config_type
from agentray.types import GenerationParams

# Families that accept teacher-written tasks: their module has the proposal functions
# (agentray/envs/proposals.py describes them).
INSTRUCT_FAMILIES: dict[str, str] = {
    "db": "agentray.envs.db.proposals",
    "os": "agentray.envs.os.proposals",
}
# Families whose tasks can be derived from a seed's own environment (a seed's table).
DERIVABLE_FAMILIES = ("db",)


class TeacherParams(GenerationParams):
    """Self-Instruct's sampling temperature, and room for a few proposals with tables."""

    max_new_tokens: int = Field(3072, description="tokens generated per request at most")
    temperature: float = Field(0.7, description="sampling temperature (Self-Instruct: 0.7)")


class OpenAITeacher(OpenAIConfig):
    """The teacher at an OpenAI-compatible endpoint: GPT-4, the paper's teacher, by default."""

    model: str = Field("gpt-4", description="the teacher model's name")
    params: TeacherParams = Field(default_factory=TeacherParams)


class HFTeacher(HFConfig):
    params: TeacherParams = Field(default_factory=TeacherParams)


class VLLMTeacher(VLLMConfig):
    params: TeacherParams = Field(default_factory=TeacherParams)


# A policy config with a teacher's defaults; backend openai (default), hf or vllm (the
# expert cannot write tasks).
TeacherConfig = policy_config_type(
    "openai", (OpenAITeacher, HFTeacher, VLLMTeacher), role="write tasks"
)


class InstructConfig(BaseModel):
    """Teacher-written tasks for families without a training set (AgentTuning's DB and OS:
    self-instruct and task derivation), each kept only if it verifies in the real env."""

    model_config = ConfigDict(extra="forbid")

    families: list[str] = Field(
        default_factory=lambda: list(INSTRUCT_FAMILIES),
        description=f"families to write tasks for; one of {', '.join(INSTRUCT_FAMILIES)}",
    )
    teacher: TeacherConfig = Field(
        default_factory=OpenAITeacher,
        description="the teacher: any OpenAI-compatible endpoint (backend openai: model, "
        "base_url, api_key_env, max_concurrency, timeout_s, retries, rate limits, prices)",
    )
    tasks_per_family: int = Field(50, gt=0, description="verified tasks wanted per family")
    proposals_per_request: int = Field(3, gt=0, le=20, description="new tasks asked per request")
    seeds_per_prompt: int = Field(
        3, ge=1, le=10, description="seed examples per prompt, from the family's train tasks"
    )
    derive_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of requests that derive new tasks over one seed's own table "
        f"(task derivation; families {', '.join(DERIVABLE_FAMILIES)}) instead of self-instruct",
    )
    max_requests_per_family: int | None = Field(
        None,
        gt=0,
        description="stop asking after this many requests per family (default: 4x the "
        "requests the wanted tasks need)",
    )
    near_duplicate_threshold: float = Field(
        0.7,
        gt=0,
        le=1,
        description="ROUGE-L F1 (Self-Instruct's measure and value) at or above which a "
        "proposal is a near-duplicate of a seed, an existing task (train or test) or an "
        "earlier kept one",
    )
    max_error_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="the stage fails (exit 1; tasks, rejected.jsonl and manifest written) when "
        "more than this share of teacher requests fail (errors, timeouts, context limit) "
        "(1: never)",
    )
    verify_workers: int = Field(2, gt=0, description="threads verifying proposals at once")
    seed: int = Field(0, description="seeds the choice of seed examples")
    output: str | None = Field(None, description="default: <run_dir>/instruct")

    @field_validator("families")
    @classmethod
    def _instruct_families(cls, value: list[str]) -> list[str]:
        unknown = [f for f in value if f not in INSTRUCT_FAMILIES]
        if unknown or not value:
            raise ValueError(
                f"families {unknown or value} cannot be written by a teacher; "
                f"allowed: {list(INSTRUCT_FAMILIES)}"
            )
        return value
