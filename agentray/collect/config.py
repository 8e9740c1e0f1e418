"""Collect-stage config: which tasks, which policy, how much in flight.

The families' own settings live in the pipeline config's ``envs:`` section."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agentray.envs.config import check_families
from agentray.envs.registry import family_names
from agentray.policies.config import ExpertConfig, PolicyConfig


def check_family_names(value: list[str]) -> list[str]:
    return check_families(value, held_out=True)


class RolloutConfig(BaseModel):
    """How episodes run on Ray; shared by collect and eval."""

    model_config = ConfigDict(extra="forbid")

    max_in_flight: int = Field(
        64,
        gt=0,
        description="episodes running at once (at most num_env_pools x envs_per_pool); "
        "tasks beyond wait in the queue",
    )
    num_env_pools: int = Field(2, gt=0, description="EnvPool actors (spread over nodes)")
    envs_per_pool: int = Field(
        64, gt=0, description="episodes (env instances) one EnvPool hosts at once; its threads"
    )
    inline_env_calls_below_ms: float = Field(
        1.0,
        ge=0,
        description="a family whose first env calls take less than this (median CPU time on "
        "their thread) runs its calls on the EnvPool's event loop instead of threads, until "
        "calls there take longer (0: always threads)",
    )
    env_pool_cpus: float = Field(0.25, ge=0, description="CPUs reserved per EnvPool actor")
    num_policy_actors: int = Field(1, gt=0, description="PolicyActor replicas")
    policy_actor_cpus: float = Field(0.5, ge=0, description="CPUs reserved per PolicyActor")
    policy_actor_gpus: float = Field(0.0, ge=0, description="GPUs per PolicyActor (hf backend)")
    max_batch_size: int = Field(32, gt=0, description="turns batched into one generate call")
    batch_wait_s: float = Field(
        0.005,
        ge=0,
        description="how long a PolicyActor waits to fill a batch (again while turns keep "
        "arriving, at most 8 times; a burst closes after two quiet waits, a lone turn after one)",
    )
    episode_timeout_s: float = Field(
        600.0, gt=0, description="wall time limit per episode attempt (then task_error)"
    )
    max_episode_retries: int = Field(
        2,
        ge=0,
        description="restarts of an episode whose EnvPool or PolicyActor died (from reset, "
        "on a live or replaced actor); then it is recorded as task_error",
    )
    max_actor_replacements: int = Field(
        16,
        ge=0,
        description="dead actors recreated per run and actor kind; past it a dead slot "
        "stays empty and the live ones carry on",
    )
    retry_errors: bool = Field(
        True,
        description="a rerun over the same output runs again the tasks whose record is a "
        "task_error (an outage, a 400, a timeout), up to max_attempts runs per task id; "
        "false keeps them as they are",
    )
    max_attempts: int = Field(
        3,
        ge=1,
        description="runs of one task id over reruns, the first included (each record "
        "carries its attempt); a task_error on its last attempt is not retried",
    )
    flush_every: int = Field(32, gt=0, description="records per parquet shard")
    flush_interval_s: float = Field(
        60.0,
        gt=0,
        description="also write a shard when the oldest buffered record is this old "
        "(bounds the work a killed driver redoes)",
    )
    metrics: bool = Field(True, description="export Ray metrics (episodes, in flight, latency)")

    @property
    def attempts_allowed(self) -> int:
        """The sink's ``max_attempts``: 1 while errors are kept frozen."""
        return self.max_attempts if self.retry_errors else 1


class CollectConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    families: list[str] = Field(default_factory=family_names, description="env families to run")
    split: Literal["train", "test"] = Field("train", description="task split")
    max_tasks_per_family: int | None = Field(
        None, gt=0, description="first N tasks of each family (default: all)"
    )
    policy: PolicyConfig = Field(
        default_factory=ExpertConfig,
        description="the teacher: backend expert (default), openai, hf or vllm",
    )
    policy_lineage: dict[str, Any] = Field(
        default_factory=dict,
        description="written into every trajectory's policy dict, e.g. {round: 0} when the "
        "policy is the model of a self-improvement round (agentray iterate sets it)",
    )
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    output: str | None = Field(None, description="default: <run_dir>/collect/trajectories")
    max_error_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="the stage fails (exit 1, manifest status failed; outputs kept) when more "
        "than this fraction of its episodes end in task_error (1: never)",
    )

    _families = field_validator("families")(check_family_names)
