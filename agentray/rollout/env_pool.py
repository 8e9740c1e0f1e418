"""EnvPool: a Ray actor hosting up to K env instances, one per episode in flight.

Threaded (``max_concurrency=K``) rather than asyncio: env steps are short blocking calls
(SQLite, a bubblewrap subprocess), so each gets a thread and the actor never stalls.
"""

from __future__ import annotations

import threading
from typing import Any

import ray

from agentray.envs.base import Env
from agentray.envs.registry import make_env
from agentray.types import Message, StepResult, TaskSpec


class EnvPool:
    def __init__(self, family_configs: dict[str, dict[str, Any]] | None = None) -> None:
        self.family_configs = family_configs or {}
        self._envs: dict[str, Env] = {}
        self._lock = threading.Lock()

    def reset(self, episode_id: str, task: dict[str, Any]) -> list[Message]:
        spec = TaskSpec(**task)
        env = make_env(spec.family, self.family_configs.get(spec.family))
        with self._lock:
            self._envs[episode_id] = env
        return env.reset(spec)

    def step(self, episode_id: str, action: str) -> dict[str, Any]:
        result: StepResult = self._envs[episode_id].step(action)
        return result.model_dump(mode="json")

    def close(self, episode_id: str) -> None:
        with self._lock:
            env = self._envs.pop(episode_id, None)
        if env is not None:
            env.close()

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def active(self) -> int:
        return len(self._envs)


def make_env_pools(
    n: int, envs_per_pool: int, family_configs: dict[str, dict[str, Any]], num_cpus: float
) -> list[Any]:
    remote = ray.remote(EnvPool).options(
        max_concurrency=envs_per_pool, num_cpus=num_cpus, scheduling_strategy="SPREAD"
    )
    return [remote.remote(family_configs) for _ in range(n)]
