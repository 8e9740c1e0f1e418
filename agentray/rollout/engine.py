"""The rollout engine: many episodes in flight over EnvPool and PolicyActor actors.

The driver runs one asyncio coroutine per episode (bounded by ``max_in_flight``); each
awaits its env pool and policy actor, so hundreds of episodes overlap their env steps and
policy calls while the policy actors batch whatever turns are pending.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter, defaultdict
from typing import Any

import ray
from tqdm.auto import tqdm

from agentray.envs.registry import make_env
from agentray.policies.registry import PolicyConfig
from agentray.records import to_conversations
from agentray.rollout.config import RolloutConfig
from agentray.rollout.env_pool import make_env_pools
from agentray.rollout.policy_actor import make_policy_actors
from agentray.rollout.sink import ParquetSink
from agentray.types import Message, Status, TaskSpec


def load_tasks(
    families: list[str],
    split: str,
    family_configs: dict[str, dict[str, Any]] | None = None,
    max_per_family: int | None = None,
) -> list[TaskSpec]:
    tasks: list[TaskSpec] = []
    for family in families:
        env = make_env(family, (family_configs or {}).get(family))
        tasks.extend(env.tasks(split)[:max_per_family])
    return tasks


class RolloutEngine:
    def __init__(
        self,
        rollout: RolloutConfig,
        policy: PolicyConfig,
        family_configs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.cfg = rollout
        self.family_configs = family_configs or {}
        if policy.backend == "expert" and policy.family_configs is None and self.family_configs:
            # the expert must know the very tasks these envs generate
            policy = policy.model_copy(update={"family_configs": self.family_configs})
        self.policy_cfg = policy
        self.pools = make_env_pools(
            rollout.num_env_pools, rollout.envs_per_pool, self.family_configs, rollout.env_pool_cpus
        )
        self.policies = make_policy_actors(
            rollout.num_policy_actors,
            policy.model_dump(mode="json"),
            rollout.max_batch_size,
            rollout.batch_wait_s,
            rollout.policy_actor_cpus,
            rollout.policy_actor_gpus,
        )
        self._policy_desc: dict[str, Any] | None = None

    async def run(
        self, tasks: list[TaskSpec], sink: ParquetSink, progress: bool = True
    ) -> dict[str, Any]:
        """Run every task not yet in ``sink``; return the per-family summary of this call."""
        todo = [t for t in tasks if t.id not in sink.written]
        self._policy_desc = await self.policies[0].describe.remote()
        self._policy_desc["params"] = self.policy_cfg.params.model_dump(mode="json")
        stats = _Stats(skipped=len(tasks) - len(todo))
        bar = tqdm(total=len(todo), desc="episodes", unit="ep", disable=not progress)
        slots = asyncio.Semaphore(self.cfg.max_in_flight)
        placement = itertools.count()

        async def one(task: TaskSpec) -> None:
            async with slots:
                k = next(placement)
                record = await self._episode(
                    task, self.pools[k % len(self.pools)], self.policies[k % len(self.policies)]
                )
            sink.add(record)
            stats.add(record)
            bar.update(1)
            bar.set_postfix(stats.postfix(), refresh=False)

        try:
            await asyncio.gather(*(one(t) for t in todo))
        finally:
            sink.flush()
            bar.close()
        return stats.summary()

    async def _episode(self, task: TaskSpec, pool: Any, policy: Any) -> dict[str, Any]:
        episode_id = f"{task.id}-{time.monotonic_ns()}"
        timings = {"env_s": 0.0, "policy_s": 0.0}
        state: dict[str, Any] = {"messages": [], "token_ids": []}
        start = time.perf_counter()
        try:
            outcome = await asyncio.wait_for(
                self._loop(task, episode_id, pool, policy, state, timings),
                timeout=self.cfg.episode_timeout_s,
            )
        except asyncio.TimeoutError:
            outcome = (
                0.0,
                Status.TASK_ERROR,
                f"episode timed out after {self.cfg.episode_timeout_s}s",
            )
        except Exception as e:  # an actor died or an env raised: recorded, not fatal
            outcome = (0.0, Status.TASK_ERROR, f"{type(e).__name__}: {e}")
        finally:
            pool.close.remote(episode_id)
        reward, status, error = outcome
        timings["wall_s"] = time.perf_counter() - start
        return self._record(task, state, reward, status, error, timings)

    async def _loop(self, task, episode_id, pool, policy, state, timings):
        t0 = time.perf_counter()
        messages: list[Message] = await pool.reset.remote(episode_id, task.model_dump(mode="json"))
        timings["env_s"] += time.perf_counter() - t0
        state["messages"] = messages
        params = self.policy_cfg.params.model_dump(mode="json")
        while True:
            t0 = time.perf_counter()
            completion = await policy.generate.remote(messages, params)
            timings["policy_s"] += time.perf_counter() - t0
            if completion["finish_reason"] == "error":
                return 0.0, Status.TASK_ERROR, completion.get("error") or "policy error"
            if completion["finish_reason"] == "context_limit":
                return 0.0, Status.AGENT_CONTEXT_LIMIT, None
            messages.append({"role": "assistant", "content": completion["text"]})
            state["token_ids"].append(completion.get("token_ids") or [])
            t0 = time.perf_counter()
            result = await pool.step.remote(episode_id, completion["text"])
            timings["env_s"] += time.perf_counter() - t0
            if result["done"]:
                return result["reward"], Status(result["status"]), None
            messages.append({"role": "user", "content": result["observation"] or ""})

    def _record(self, task, state, reward, status, error, timings) -> dict[str, Any]:
        messages = state["messages"]
        agent_turns = sum(
            1 for m in messages if m["role"] == "assistant" and m.get("loss") is not False
        )
        return {
            "id": task.id,
            "task": task.family,
            "split": task.split,
            "env_version": make_env_version(task.family),
            "conversations": to_conversations(messages),
            "reward": float(reward),
            "status": status.value,
            "turns": agent_turns,
            "policy": json.dumps(self._policy_desc or {}),
            "seed": task.seed,
            "timings": json.dumps({k: round(v, 4) for k, v in timings.items()}),
            "error": error,
            "response_token_ids": state["token_ids"],
        }

    def shutdown(self) -> None:
        for actor in [*self.pools, *self.policies]:
            ray.kill(actor)


def make_env_version(family: str) -> str:
    from agentray.envs.registry import env_class

    return f"{family}-v{env_class(family).version}"


class _Stats:
    def __init__(self, skipped: int = 0) -> None:
        self.skipped = skipped
        self.by_family: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.started = time.perf_counter()

    def add(self, record: dict[str, Any]) -> None:
        self.by_family[record["task"]].append(
            {k: record[k] for k in ("reward", "status", "turns", "error")}
        )

    def postfix(self) -> dict[str, str]:
        rows = [r for rs in self.by_family.values() for r in rs]
        ok = sum(r["reward"] >= 1.0 for r in rows)
        errors = sum(r["status"] == Status.TASK_ERROR.value for r in rows)
        rate = len(rows) / max(time.perf_counter() - self.started, 1e-9)
        return {
            "ep/s": f"{rate:.1f}",
            "success": f"{ok / max(len(rows), 1):.0%}",
            "errors": str(errors),
        }

    def summary(self) -> dict[str, Any]:
        families = {family: summarize(rows) for family, rows in sorted(self.by_family.items())}
        return {
            "families": families,
            "skipped_already_done": self.skipped,
            "wall_s": round(time.perf_counter() - self.started, 2),
        }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    return {
        "count": n,
        "success_rate": sum(r["reward"] >= 1.0 for r in rows) / n if n else 0.0,
        "mean_reward": sum(r["reward"] for r in rows) / n if n else 0.0,
        "mean_turns": sum(r["turns"] for r in rows) / n if n else 0.0,
        "statuses": dict(Counter(r["status"] for r in rows)),
    }
