"""EnvPool: a Ray actor that hosts env instances and runs whole episodes on them.

The driver sends each episode once (``run_episode``: a task and the PolicyActor to use;
the engine sends them many per ``start_episodes`` call and fetches the ended ones from
its mailbox with ``episode_results``); the pool runs its loop here, next to its env, so
one episode step costs one policy turn and no driver round trip.

Env calls are blocking (SQLite, a bubblewrap subprocess): they run on a thread pool of
``env_threads`` so the actor's event loop never stalls, except for families whose calls
prove fast (median of ``_PROBE_CALLS`` under ``inline_below_ms``, in thread CPU time; see
``_CallPlacement``): those run on the event loop itself, where a thread hop would cost
more than the call.

Turns reach the PolicyActor many per call. For a policy that answers a batch at once, the
turns of this pool's episodes that become ready in one turn of the event loop go out in
one ``generate_batch``. For one whose answers each take their own time (a remote teacher)
they go out with ``submit`` and come back through this pool's mailbox (``collect``) as
each is ready, so no reply waits for a slower one.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray
from ray.exceptions import RayActorError

from agentray.collect.mailbox import Outbox
from agentray.collect.metrics import RolloutMetrics
from agentray.envs.base import Env, EnvServerLost
from agentray.envs.registry import make_env
from agentray.policies.base import EpisodeTask
from agentray.ray_utils import plugin_runtime_env, relax_gc
from agentray.records import EpisodeResult
from agentray.types import Completion, Message, Status, StepResult, TaskSpec

POLICY_LOST = "policy"
ENV_SERVER_LOST = "env_server"
_PROBE_CALLS = 20  # env calls of a family timed on threads before it may run inline
_BACK_TO_THREADS = 10  # an inline call this many times over the bound sends it back


class _CallPlacement:
    """Where one family's env calls run: threads until they prove fast.

    On threads, a call's wall time also counts the time it waited for the GIL, which the
    event loop holds most of the time when many episodes are in flight: there a call of
    50 us can take milliseconds. So the first probes judge a family by the CPU time its
    calls take on their thread. A call that blocks without CPU (a subprocess, the network)
    is caught once inline, where its wall time is its cost to the loop: one call over
    ``_BACK_TO_THREADS`` times the bound, or a median of ``_PROBE_CALLS`` inline calls over
    it, sends the family back to threads, and from then on its probes are judged by wall
    time."""

    def __init__(self, inline_below_s: float) -> None:
        self.inline_below_s = inline_below_s
        self.inline = False
        self.sent_back = False  # was inline once and proved slow there
        self.probes: list[float] = []

    def record(self, seconds: float, cpu_s: float | None = None) -> None:
        """A call took ``seconds`` (wall) and, on a thread, ``cpu_s`` of that thread's CPU."""
        if self.inline:
            if seconds > _BACK_TO_THREADS * self.inline_below_s:
                self._to_threads()
                return
            if self._probe(seconds) and not self.inline:
                self.sent_back = True
            return
        self._probe(seconds if self.sent_back or cpu_s is None else cpu_s)

    def _probe(self, seconds: float) -> bool:
        """Adds a probe; after ``_PROBE_CALLS`` of them, places the family by their median
        (the first calls of a process warm caches up). Whether it placed it."""
        self.probes.append(seconds)
        if len(self.probes) < _PROBE_CALLS:
            return False
        self.inline = sorted(self.probes)[_PROBE_CALLS // 2] < self.inline_below_s
        self.probes = []
        return True

    def _to_threads(self) -> None:
        self.inline, self.sent_back, self.probes = False, True, []


def error_text(error: BaseException | str) -> str:
    """``Type: first line of the message`` (Ray errors carry whole tracebacks)."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else ""
    return line if isinstance(error, str) else f"{type(error).__name__}: {line}"


class _Link:
    """This pool's channel to one PolicyActor: ``generate`` one turn, get its completion.

    Turns that become ready in one turn of the event loop go out in one call. A RayActorError
    (the PolicyActor died) fails every pending turn of the link with it."""

    def __init__(self, policy: Any, params: dict[str, Any], on_lost: Callable[[], None]) -> None:
        self.policy = policy
        self.params = params
        self._on_lost = on_lost
        # (turn id, conversation, its episode's task or None)
        self._outgoing: list[tuple[int, list[Message], dict[str, Any] | None]] = []
        self._futures: dict[int, asyncio.Future] = {}
        self._ids = itertools.count()
        self._tasks: set[asyncio.Task] = set()

    async def generate(
        self, messages: list[Message], task: dict[str, Any] | None = None
    ) -> Completion:
        """The completion of one turn; ``task`` (an ``EpisodeTask`` as a dict) goes along
        for a policy that acts on its episode's task."""
        loop = asyncio.get_running_loop()
        turn_id, future = next(self._ids), loop.create_future()
        self._futures[turn_id] = future
        future.add_done_callback(lambda _: self._futures.pop(turn_id, None))
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append((turn_id, messages, task))
        return await future

    def _flush(self) -> None:
        batch, self._outgoing = self._outgoing, []
        self._spawn(self._send(batch))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[int, list[Message], dict[str, Any] | None]]) -> None:
        raise NotImplementedError

    def _deliver(self, turn_id: int, completion: Completion) -> None:
        future = self._futures.get(turn_id)
        if future is not None and not future.done():
            future.set_result(completion)

    def _fail(self, turn_ids: list[int], error: BaseException) -> None:
        if isinstance(error, RayActorError):
            self._on_lost()
        for turn_id in turn_ids:
            future = self._futures.get(turn_id)
            if future is not None and not future.done():
                future.set_exception(error)


class _BatchLink(_Link):
    """For a policy that answers a batch at once: one ``generate_batch`` call per batch."""

    async def _send(self, batch: list[tuple[int, list[Message], dict[str, Any] | None]]) -> None:
        try:
            ref = self.policy.generate_batch.remote(
                [m for _, m, _ in batch], self.params, _tasks_of(batch)
            )
            completions = await ref
        except Exception as e:  # the PolicyActor died (RayActorError) or failed
            self._fail([turn_id for turn_id, _, _ in batch], e)
            return
        for (turn_id, _, _), completion in zip(batch, completions, strict=True):
            self._deliver(turn_id, completion)


class _MailboxLink(_Link):
    """For a policy whose answers each take their own time: turns go out with ``submit``;
    one ``collect`` call at a time brings back whatever completions are ready, so none
    waits for a slower one and each call still carries many turns."""

    def __init__(self, *args: Any, inbox: str) -> None:
        super().__init__(*args)
        self.inbox = inbox
        self._collecting = False

    async def _send(self, batch: list[tuple[int, list[Message], dict[str, Any] | None]]) -> None:
        if not self._collecting:
            self._collecting = True
            self._spawn(self._collect())
        try:
            turns = [(turn_id, messages) for turn_id, messages, _ in batch]
            await self.policy.submit.remote(self.inbox, turns, self.params, _tasks_of(batch))
        except Exception as e:
            self._fail([turn_id for turn_id, _, _ in batch], e)

    async def _collect(self) -> None:
        try:
            while self._futures:
                for turn_id, completion in await self.policy.collect.remote(self.inbox):
                    self._deliver(turn_id, completion)
        except Exception as e:
            self._fail(list(self._futures), e)
        finally:
            self._collecting = False


class EnvPool:
    def __init__(
        self,
        family_configs: dict[str, dict[str, Any]] | None = None,
        env_threads: int = 64,
        metrics: bool = False,
        inline_below_ms: float = 1.0,
    ) -> None:
        self.family_configs = family_configs or {}
        self._inline_below_s = inline_below_ms / 1000
        self._placement: dict[str, _CallPlacement] = {}
        self._envs: dict[str, Env] = {}
        self._executor = ThreadPoolExecutor(max_workers=env_threads, thread_name_prefix="env")
        self._links: dict[tuple[Any, str], _Link] = {}
        self._inbox = uuid.uuid4().hex  # this pool's name in the PolicyActors' mailboxes
        self._policies: dict[str, Any] = {}  # PolicyActor handles by the caller's key
        self._outboxes: dict[str, Outbox] = {}  # ended episodes, by the inbox of their caller
        self._running: set[asyncio.Task] = set()
        self._episodes = self._peak = 0
        self._metrics = RolloutMetrics(metrics)
        relax_gc()

    # -- whole episodes ----------------------------------------------------------------------

    def use_policy(self, key: str, policy: Any) -> None:
        """Keep ``policy`` (a PolicyActor handle) under ``key``, so ``run_episode`` can name
        it by ``key``: a handle costs its receiver a deserialisation on every call."""
        self._policies[key] = policy

    async def start_episodes(self, inbox: str, episodes: list[tuple]) -> None:
        """Start ``episodes`` (each the arguments of ``run_episode``, the episode id first)
        and return; each one's EpisodeResult goes to ``inbox``'s mailbox, read with
        ``episode_results``. One call starts many episodes, and one call brings many back."""
        outbox = self._outboxes.setdefault(inbox, Outbox())
        for args in episodes:
            task = asyncio.ensure_future(self._run_into(outbox, args))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def episode_results(self, inbox: str) -> list[tuple[str, EpisodeResult]]:
        """(episode id, result) of the episodes ``inbox`` started that ended since its
        last call (waits for at least one)."""
        return await self._outboxes.setdefault(inbox, Outbox()).take()

    async def _run_into(self, outbox: Outbox, args: tuple) -> None:
        try:
            result = await self.run_episode(*args)
        except Exception as e:  # a bug in the pool itself: recorded, not retried
            result = EpisodeResult.failed(error_text(e))
        outbox.put(args[0], result)

    async def run_episode(
        self,
        episode_id: str,
        task: dict[str, Any],
        policy: Any,
        params: dict[str, Any],
        timeout_s: float,
        batch_turns: bool = True,
        send_task: bool = False,
    ) -> EpisodeResult:
        """Reset, then policy turn / env step until done, within ``timeout_s``. With
        ``send_task`` each turn goes to the policy with the episode's task and its family's
        settings (an ``EpisodeTask``), for a policy that acts on the task (the expert).

        ``policy`` is a PolicyActor handle or the key it was given to ``use_policy``.
        Returns the conversation and outcome, with ``lost`` = "policy" when the PolicyActor
        died (the caller restarts the episode elsewhere).
        """
        if isinstance(policy, str):
            if policy not in self._policies:
                raise KeyError(f"no PolicyActor was given to this pool as {policy!r} (use_policy)")
            policy = self._policies[policy]
        spec = TaskSpec(**task)
        ep = EpisodeResult()
        try:
            loop = self._loop(ep, episode_id, spec, policy, params, batch_turns, send_task)
            await asyncio.wait_for(loop, timeout_s)
        except asyncio.TimeoutError:
            ep.finish(0.0, Status.TASK_ERROR, f"episode timed out after {timeout_s}s")
        except RayActorError as e:
            ep.lost = POLICY_LOST
            ep.finish(0.0, Status.TASK_ERROR, f"policy actor lost: {error_text(e)}")
        except EnvServerLost as e:  # a remote env's server: restarted like a dead actor
            ep.lost = ENV_SERVER_LOST
            ep.finish(0.0, Status.TASK_ERROR, f"env server lost: {error_text(e)}")
        except Exception as e:  # an env raised: this episode's error, not the pool's
            ep.finish(0.0, Status.TASK_ERROR, error_text(e))
        finally:
            await self.close(episode_id)
        return ep

    async def _loop(
        self,
        ep: EpisodeResult,
        episode_id: str,
        task: TaskSpec,
        policy: Any,
        params: dict[str, Any],
        batch_turns: bool,
        send_task: bool = False,
    ) -> None:
        t0 = time.perf_counter()
        messages = ep.messages = await self.reset(episode_id, task)
        self._timed(ep, "env_reset", t0)
        link = self._link(policy, params, batch_turns)
        episode_task = self.episode_task(task) if send_task else None
        while True:
            t0 = time.perf_counter()
            completion = await link.generate(messages, episode_task)
            self._timed(ep, "policy", t0)
            ep.prompt_tokens += completion.prompt_tokens or len(completion.prompt_token_ids or [])
            ep.completion_tokens += completion.completion_tokens or len(completion.token_ids or [])
            if completion.finish_reason == "error":
                return ep.finish(0.0, Status.TASK_ERROR, completion.error or "policy error")
            if completion.finish_reason == "context_limit":
                return ep.finish(0.0, Status.AGENT_CONTEXT_LIMIT)
            text = completion.text
            messages.append({"role": "assistant", "content": text})
            t0 = time.perf_counter()
            result: StepResult = await self._call(task.family, self._envs[episode_id].step, text)
            self._timed(ep, "env_step", t0)
            if result.done:
                return ep.finish(result.reward, result.status)
            messages.append({"role": "user", "content": result.observation or ""})

    def episode_task(self, task: TaskSpec) -> dict[str, Any]:
        """``task`` with the family settings this pool's envs use (an ``EpisodeTask``)."""
        config = self.family_configs.get(task.family) or {}
        return EpisodeTask(task=task, family_config=config).model_dump(mode="json")

    def _link(self, policy: Any, params: dict[str, Any], batch_turns: bool) -> _Link:
        key = (policy, repr(sorted(params.items())))  # handles compare by actor id
        if key not in self._links:

            def forget() -> None:
                self._links.pop(key, None)

            if batch_turns:
                self._links[key] = _BatchLink(policy, params, forget)
            else:
                self._links[key] = _MailboxLink(policy, params, forget, inbox=self._inbox)
        return self._links[key]

    def _timed(self, ep: EpisodeResult, kind: str, t0: float) -> None:
        elapsed = time.perf_counter() - t0
        ep.timings["policy_s" if kind == "policy" else "env_s"] += elapsed
        self._metrics.latency(kind, elapsed)

    async def _call(self, family: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on a thread, or inline once ``family``'s calls proved fast."""
        placement = self._placement.get(family)
        if placement is None:
            # a family whose calls wait on the network (remote envs) never runs inline
            inline = getattr(getattr(fn, "__self__", None), "inline_calls", True)
            placement = _CallPlacement(self._inline_below_s if inline else 0.0)
            self._placement[family] = placement
        if placement.inline:
            t0 = time.perf_counter()
            out = fn(*args)
            placement.record(time.perf_counter() - t0)
            return out
        loop = asyncio.get_running_loop()
        out, seconds, cpu_s = await loop.run_in_executor(self._executor, _timed_call, fn, args)
        placement.record(seconds, cpu_s)
        return out

    # -- one call at a time (for callers that drive the loop themselves) ---------------------

    async def reset(self, episode_id: str, task: dict[str, Any] | TaskSpec) -> list[Message]:
        spec = task if isinstance(task, TaskSpec) else TaskSpec(**task)
        env = make_env(spec.family, self.family_configs.get(spec.family))
        self._envs[episode_id] = env
        self._episodes += 1
        self._peak = max(self._peak, len(self._envs))
        return await self._call(spec.family, env.reset, spec)

    async def step(self, episode_id: str, action: str) -> dict[str, Any]:
        env = self._envs[episode_id]
        result: StepResult = await self._call(env.name, env.step, action)
        return result.model_dump(mode="json")

    async def close(self, episode_id: str) -> None:
        env = self._envs.pop(episode_id, None)
        if env is not None:
            await self._call(env.name, env.close)

    def inline_families(self) -> list[str]:
        """The families whose env calls run on the event loop (they proved fast)."""
        return sorted(f for f, p in self._placement.items() if p.inline)

    # -- introspection -------------------------------------------------------------------------

    def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    def active(self) -> int:
        return len(self._envs)

    def pid(self) -> int:
        return os.getpid()

    def load(self) -> dict[str, Any]:
        """Where this pool runs, episodes hosted (in all, now, at most at once) and the
        families whose env calls run inline."""
        return {
            "node_id": self.node_id(),
            "episodes": self._episodes,
            "active": self.active(),
            "peak_active": self._peak,
            "inline_families": self.inline_families(),
        }


def _tasks_of(
    batch: list[tuple[int, list[Message], dict[str, Any] | None]],
) -> list[dict[str, Any] | None] | None:
    """The turns' tasks, or None where no turn carries one."""
    tasks = [task for _, _, task in batch]
    return tasks if any(t is not None for t in tasks) else None


def _timed_call(fn: Callable[..., Any], args: tuple) -> tuple[Any, float, float]:
    """``fn(*args)``, its wall time and the CPU time of this thread it took."""
    t0, c0 = time.perf_counter(), time.thread_time()
    out = fn(*args)
    return out, time.perf_counter() - t0, time.thread_time() - c0


def env_pool_factory(
    envs_per_pool: int,
    family_configs: dict[str, dict[str, Any]],
    num_cpus: float,
    metrics: bool = False,
    max_concurrency: int = 1000,
    inline_below_ms: float = 1.0,
) -> Callable[[], Any]:
    """A function that starts one EnvPool actor (the engine calls it again to replace one).

    ``envs_per_pool`` env calls run at once (threads); ``max_concurrency`` bounds the
    episodes one pool accepts at once (keep it above the episodes in flight)."""
    remote = ray.remote(EnvPool).options(
        max_concurrency=max_concurrency,
        num_cpus=num_cpus,
        scheduling_strategy="SPREAD",
        runtime_env=plugin_runtime_env(),
    )
    return lambda: remote.remote(family_configs, envs_per_pool, metrics, inline_below_ms)


def make_env_pools(
    n: int, envs_per_pool: int, family_configs: dict[str, dict[str, Any]], num_cpus: float
) -> list[Any]:
    start = env_pool_factory(envs_per_pool, family_configs, num_cpus)
    return [start() for _ in range(n)]
