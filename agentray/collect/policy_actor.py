"""PolicyActor: hosts one Policy and batches the pending turns of many episodes.

A policy that answers a batch at once (a local model: one forward pass; the expert) gets
whatever arrives within ``batch_wait_s`` (up to ``max_batch_size``; the window is extended
while turns keep arriving) in one ``Policy.generate`` call; EnvPools send it their turns
with ``generate_batch``. A policy whose answers each take their own time (a remote
teacher) gets every turn on its own, so one slow reply holds no other back; EnvPools send
it turns with ``submit`` and fetch whatever is ready with ``collect`` (a mailbox per pool),
many turns per call either way.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Callable
from typing import Any

import ray

from agentray.collect.mailbox import Outbox
from agentray.policies.base import EpisodeTask
from agentray.ray_utils import plugin_runtime_env, relax_gc
from agentray.types import Completion, GenerationParams, Message

BATCHED_BACKENDS = frozenset({"hf", "vllm", "expert"})
MAX_BATCH_WINDOWS = 8  # batch_wait_s windows a batch waits at most while turns keep arriving


def answers_in_batches(policy: Any) -> bool:
    """Whether ``policy`` answers a batch at once: its ``batched`` attribute if it has one,
    else by backend (a local model or the expert yes, a remote endpoint no)."""
    return bool(getattr(policy, "batched", policy.backend in BATCHED_BACKENDS))


class PolicyActor:
    def __init__(self, policy_config: dict[str, Any], max_batch_size: int, batch_wait_s: float):
        from agentray.policies.registry import make_policy, parse_policy_config

        self.config = parse_policy_config(policy_config)
        self.policy = make_policy(self.config)
        self.batched = answers_in_batches(self.policy)
        self.max_batch_size = max_batch_size
        self.batch_wait_s = batch_wait_s
        # (conversation, params, params key, future, its episode's task or None)
        self._pending: list[
            tuple[list[Message], GenerationParams, str, asyncio.Future, EpisodeTask | None]
        ] = []
        self._has_work: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()  # keeps batch tasks referenced until done
        self._turns = self._batches = 0
        self._calls: dict[str, int] = {"generate_batch": 0, "submit": 0, "collect": 0}
        self._outboxes: dict[str, Outbox] = {}
        relax_gc()

    def describe(self) -> dict[str, Any]:
        return self.policy.describe()

    def turn_batching(self) -> bool:
        """Whether callers should send turns in batches (see ``answers_in_batches``)."""
        return self.batched

    def needs_tasks(self) -> bool:
        """Whether callers should send each turn's task along (``Policy.needs_tasks``)."""
        return bool(getattr(self.policy, "needs_tasks", False))

    async def stats(self) -> dict[str, Any]:
        """The policy's own accounting (requests, retries, tokens, cost), if it keeps any."""
        stats = getattr(self.policy, "stats", None)
        if not callable(stats):
            return {}
        out = stats()
        if inspect.isawaitable(out):
            out = await out
        return dict(out or {})

    def reset_prefix_cache(self) -> bool:
        """Drop the policy's cached prefixes, if it keeps any (whether it does)."""
        reset = getattr(self.policy, "reset_prefix_cache", None)
        if callable(reset):
            reset()
        return callable(reset)

    def pid(self) -> int:
        return os.getpid()

    def load(self) -> dict[str, Any]:
        """Where this actor runs, turns served, the ``Policy.generate`` calls they took
        (batches), the calls EnvPools made to send and fetch them, and ``cpu_s``: the
        process's CPU seconds so far, all threads (Ray's included; the difference of two
        reads over the turns served between them is the CPU a turn costs here)."""
        return {
            "node_id": self.node_id(),
            "turns": self._turns,
            "batches": self._batches,
            "calls": dict(self._calls),
            "cpu_s": time.process_time(),
        }

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    async def generate(
        self,
        messages: list[Message],
        params: dict[str, Any],
        task: dict[str, Any] | None = None,
    ) -> Completion:
        return (await self.generate_batch([messages], params, [task]))[0]

    async def generate_batch(
        self,
        batch: list[list[Message]],
        params: dict[str, Any],
        tasks: list[dict[str, Any] | None] | None = None,
    ) -> list[Completion]:
        """One completion per conversation; ``tasks[i]`` is conversation i's episode task
        (an ``EpisodeTask`` as a dict), for a policy that acts on it."""
        self._calls["generate_batch"] += 1
        gen_params = GenerationParams(**params)
        episodes = _episode_tasks(tasks, len(batch))
        if self.batched:
            completions = await self._join_batch(batch, gen_params, episodes)
        else:
            singles = await asyncio.gather(
                *(
                    self._generate([m], gen_params, [t])
                    for m, t in zip(batch, episodes, strict=True)
                )
            )
            completions = [single[0] for single in singles]
        return completions

    async def submit(
        self,
        inbox: str,
        turns: list[tuple[int, list[Message]]],
        params: dict[str, Any],
        tasks: list[dict[str, Any] | None] | None = None,
    ) -> None:
        """Start ``turns`` (id, conversation; ``tasks`` as in ``generate_batch``); their
        completions go to ``inbox``'s mailbox, read with ``collect``."""
        self._calls["submit"] += 1
        outbox = self._outboxes.setdefault(inbox, Outbox())
        gen_params = GenerationParams(**params)
        episodes = _episode_tasks(tasks, len(turns))
        for (turn_id, messages), episode in zip(turns, episodes, strict=True):
            self._spawn(self._answer(outbox, turn_id, messages, gen_params, episode))

    async def collect(self, inbox: str) -> list[tuple[int, Completion]]:
        """The completions ready for ``inbox`` (waits for at least one)."""
        self._calls["collect"] += 1
        return await self._outboxes.setdefault(inbox, Outbox()).take()

    async def _answer(
        self,
        outbox: Outbox,
        turn_id: int,
        messages: list[Message],
        params: GenerationParams,
        episode: EpisodeTask | None = None,
    ) -> None:
        if self.batched:
            completion = (await self._join_batch([messages], params, [episode]))[0]
        else:
            completion = (await self._generate([messages], params, [episode]))[0]
        outbox.put(turn_id, completion)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _join_batch(
        self,
        batch: list[list[Message]],
        params: GenerationParams,
        episodes: list[EpisodeTask | None],
    ) -> list[Completion]:
        if self._has_work is None:
            self._has_work = asyncio.Event()
            self._worker = asyncio.create_task(self._batch_loop())
        loop = asyncio.get_running_loop()
        key = params.model_dump_json()
        futures = [loop.create_future() for _ in batch]
        self._pending.extend(
            (messages, params, key, future, episode)
            for messages, future, episode in zip(batch, futures, episodes, strict=True)
        )
        self._has_work.set()
        return list(await asyncio.gather(*futures))

    async def _batch_loop(self) -> None:
        assert self._has_work is not None
        while True:
            await self._has_work.wait()
            if len(self._pending) < self.max_batch_size and self.batch_wait_s > 0:
                await self._fill_window()
            batch = self._pending[: self.max_batch_size]
            del self._pending[: self.max_batch_size]
            if not self._pending:
                self._has_work.clear()
            for group in _group_by_params(batch):
                self._spawn(self._run(group))

    async def _fill_window(self) -> None:
        """Let more turns join this batch: wait ``batch_wait_s``, and again while turns
        keep arriving (at most ``MAX_BATCH_WINDOWS`` windows, until the batch is full). A
        burst of turns sent over more than one window (32 episodes' turns, sent one
        ``remote`` call at a time) then makes one batch, not a batch and its stragglers,
        which would wait for the whole batch and then decode on their own. A lone turn
        waits one window; once turns have kept arriving, one quiet window is tolerated
        (the sender paused a few milliseconds mid-burst) and two close the batch."""
        quiet, burst = 0, False
        for _ in range(MAX_BATCH_WINDOWS):
            seen = len(self._pending)
            await asyncio.sleep(self.batch_wait_s)
            if len(self._pending) >= self.max_batch_size:
                return
            if len(self._pending) > seen:
                quiet, burst = 0, True
                continue
            quiet += 1
            if quiet >= (2 if burst else 1):
                return

    async def _run(self, group: list[tuple]) -> None:
        completions = await self._generate(
            [item[0] for item in group], group[0][1], [item[4] for item in group]
        )
        for item, completion in zip(group, completions, strict=True):
            if not item[3].done():
                item[3].set_result(completion)

    async def _generate(
        self,
        batch: list[list[Message]],
        params: GenerationParams,
        episodes: list[EpisodeTask | None] | None = None,
    ) -> list[Completion]:
        """``Policy.generate``; a backend failure fails these turns, not the actor. The
        turns' tasks go along only where some turn has one."""
        self._turns += len(batch)
        self._batches += 1
        try:
            if episodes is not None and any(e is not None for e in episodes):
                completions = await self.policy.generate(batch, params, tasks=episodes)
            else:
                completions = await self.policy.generate(batch, params)
            if len(completions) != len(batch):
                raise RuntimeError(f"{len(completions)} completions for {len(batch)} turns")
        except Exception as e:
            return [Completion(text="", finish_reason="error", error=repr(e))] * len(batch)
        return completions


def _episode_tasks(tasks: list[dict[str, Any] | None] | None, n: int) -> list[EpisodeTask | None]:
    if tasks is None:
        return [None] * n
    if len(tasks) != n:
        raise ValueError(f"{len(tasks)} tasks for {n} turns")
    return [None if t is None else EpisodeTask.model_validate(t) for t in tasks]


def _group_by_params(batch: list[tuple]) -> list[list[tuple]]:
    groups: dict[str, list[tuple]] = {}
    for item in batch:
        groups.setdefault(item[2], []).append(item)
    return list(groups.values())


def policy_actor_factory(
    policy_config: dict[str, Any],
    max_batch_size: int,
    batch_wait_s: float,
    num_cpus: float,
    num_gpus: float,
    max_concurrency: int = 1000,
) -> Callable[[], Any]:
    """A function that starts one PolicyActor (the engine calls it again to replace one).

    ``max_concurrency`` bounds the turns one actor accepts at once; keep it above the
    episodes in flight so no turn waits outside the batcher."""
    remote = ray.remote(PolicyActor).options(
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        max_concurrency=max_concurrency,
        runtime_env=plugin_runtime_env(),
    )
    return lambda: remote.remote(policy_config, max_batch_size, batch_wait_s)


def make_policy_actors(
    n: int,
    policy_config: dict[str, Any],
    max_batch_size: int,
    batch_wait_s: float,
    num_cpus: float,
    num_gpus: float,
) -> list[Any]:
    start = policy_actor_factory(policy_config, max_batch_size, batch_wait_s, num_cpus, num_gpus)
    return [start() for _ in range(n)]
