"""PolicyActor: hosts one Policy and batches the pending turns of many episodes.

Episodes call ``generate`` one conversation at a time; the actor gathers whatever arrives
within ``batch_wait_s`` (up to ``max_batch_size``) into one ``Policy.generate`` call, so a
local model runs one batched forward pass for many episodes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from agentray.types import Completion, GenerationParams, Message


class PolicyActor:
    def __init__(self, policy_config: dict[str, Any], max_batch_size: int, batch_wait_s: float):
        from agentray.policies.registry import PolicyConfig, make_policy

        self.config = PolicyConfig(**policy_config)
        self.policy = make_policy(self.config)
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    def describe(self) -> dict[str, Any]:
        return self.policy.describe()

    async def generate(self, messages: list[Message], params: dict[str, Any]) -> dict[str, Any]:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._batch_loop())
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        await self._queue.put((messages, GenerationParams(**params), future))
        completion: Completion = await future
        return completion.model_dump(mode="json")

    async def _batch_loop(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            deadline = asyncio.get_running_loop().time() + self.batch_wait_s
            while len(batch) < self.max_batch_size:
                timeout = deadline - asyncio.get_running_loop().time()
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), max(timeout, 0)))
                except asyncio.TimeoutError:
                    break
            for group in _group_by_params(batch):
                asyncio.create_task(self._run(group))

    async def _run(self, group: list[tuple]) -> None:
        params = group[0][1]
        try:
            completions = await self.policy.generate([m for m, _, _ in group], params)
        except Exception as e:  # a backend failure fails these turns, not the actor
            completions = [Completion(text="", finish_reason="error", error=repr(e))] * len(group)
        for (_, _, future), completion in zip(group, completions, strict=True):
            if not future.done():
                future.set_result(completion)


def _group_by_params(batch: list[tuple]) -> list[list[tuple]]:
    groups: dict[str, list[tuple]] = {}
    for item in batch:
        groups.setdefault(item[1].model_dump_json(), []).append(item)
    return list(groups.values())


def make_policy_actors(
    n: int,
    policy_config: dict[str, Any],
    max_batch_size: int,
    batch_wait_s: float,
    num_cpus: float,
    num_gpus: float,
) -> list[Any]:
    remote = ray.remote(PolicyActor).options(
        num_cpus=num_cpus, num_gpus=num_gpus, max_concurrency=1000
    )
    return [remote.remote(policy_config, max_batch_size, batch_wait_s) for _ in range(n)]
