"""The rollout engine: many episodes in flight over EnvPool and PolicyActor actors.

``max_in_flight`` worker coroutines pull tasks from one iterator, so a queued task costs
nothing until a worker takes it (memory stays flat however many are queued). Each episode
goes to the least-loaded EnvPool and PolicyActor and keeps both for all its turns: the
driver sends it once and the pool runs the loop next to its env, sending the turns of its
episodes to that PolicyActor in batches, which batches them again across pools into
``Policy.generate`` calls. Episodes travel in batches too: those that start in one turn of
the driver's event loop go to a pool in one ``EnvPool.start_episodes`` call, and ended
ones come back many per ``EnvPool.episode_results`` call (a mailbox per engine); a pool
gets each PolicyActor's handle once (``EnvPool.use_policy``), and episodes name it by key.

If either actor dies, the engine replaces it (once, however many episodes saw it die) and
restarts the episode from reset, up to ``max_episode_retries`` times (also when a remote
env's server stops answering); after that the
episode is recorded as ``task_error`` with the errors. Every record goes through the sink,
which keeps one per task id, so a rerun over the same folder skips what is done and runs
again, as the next attempt, a ``task_error`` the sink's ``max_attempts`` allows.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sized
from typing import Any

from ray.exceptions import RayActorError
from tqdm.auto import tqdm

from agentray.collect.actors import ActorSet, NoLiveActors, Slot
from agentray.collect.config import RolloutConfig
from agentray.collect.env_pool import ENV_SERVER_LOST, POLICY_LOST, env_pool_factory, error_text
from agentray.collect.mailbox import PoolLink
from agentray.collect.metrics import RolloutMetrics
from agentray.collect.policy_actor import policy_actor_factory
from agentray.collect.sink import ParquetSink
from agentray.envs.config import EnvsConfig, as_envs, family_config, family_config_dicts
from agentray.envs.registry import make_env
from agentray.policies.config import AnyPolicyConfig, parse_policy_config
from agentray.records import EpisodeResult, Trajectory, env_version_of
from agentray.types import Status, TaskSpec

ENV_POOL, POLICY = "env_pool", POLICY_LOST
_END_OF_RUN_TIMEOUT_S = 10.0
_POOL_GRACE_S = 30.0


def load_tasks(
    families: list[str],
    split: str,
    envs: EnvsConfig | dict[str, Any] | None = None,
    max_per_family: int | None = None,
) -> list[TaskSpec]:
    return list(iter_tasks(families, split, envs, max_per_family))


def iter_tasks(
    families: list[str],
    split: str,
    envs: EnvsConfig | dict[str, Any] | None = None,
    max_per_family: int | None = None,
) -> Iterator[TaskSpec]:
    """The tasks of each family in turn, built one family at a time with its settings in
    ``envs`` (an EnvsConfig or a partial dict of per-family settings). Tasks are built
    here, once, and travel with their episodes: no other process rebuilds them."""
    envs = as_envs(envs)
    for family in families:
        env = make_env(family, family_config(envs, family))
        yield from env.tasks(split)[:max_per_family]


class ActorLost(Exception):
    """An actor an episode was using died (or became unreachable)."""

    def __init__(self, kind: str, cause: BaseException | str) -> None:
        super().__init__(
            cause if isinstance(cause, str) else f"{kind} actor lost: {error_text(cause)}"
        )
        self.kind = kind


class RolloutEngine:
    """EnvPools (``num_env_pools``, SPREAD over nodes) and PolicyActors; ``run`` collects episodes
    into a sink (``lineage``: keys added to every record's policy dict); ``shutdown`` ends them."""

    def __init__(
        self,
        rollout: RolloutConfig,
        policy: AnyPolicyConfig | dict[str, Any],
        envs: EnvsConfig | dict[str, Any] | None = None,
        lineage: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = rollout
        self.envs = as_envs(envs)
        self.family_configs = family_config_dicts(self.envs)
        policy = parse_policy_config(policy)
        self.policy_cfg = policy
        self.metrics = RolloutMetrics(rollout.metrics)
        self.pools = ActorSet(
            ENV_POOL,
            env_pool_factory(
                rollout.envs_per_pool,
                self.family_configs,
                rollout.env_pool_cpus,
                metrics=rollout.metrics,
                max_concurrency=max(1000, 2 * rollout.max_in_flight),
                inline_below_ms=rollout.inline_env_calls_below_ms,
            ),
            rollout.num_env_pools,
            rollout.max_actor_replacements,
            self.metrics,
        )
        self.policies = ActorSet(
            POLICY,
            policy_actor_factory(
                policy.model_dump(mode="json"),
                rollout.max_batch_size,
                rollout.batch_wait_s,
                rollout.policy_actor_cpus,
                rollout.policy_actor_gpus,
                max_concurrency=max(1000, 2 * rollout.max_in_flight),
            ),
            rollout.num_policy_actors,
            rollout.max_actor_replacements,
            self.metrics,
        )
        self._params, self._lineage = policy.params.model_dump(mode="json"), dict(lineage or {})
        self._policy_desc: dict[str, Any] = {}
        self._batch_turns = True
        self._send_tasks = False
        self._running: set[str] = set()
        self._retries: Counter[str] = Counter()
        self._episode_ids = itertools.count()  # unique per engine, so per pool
        # each PolicyActor's key in the EnvPools (see _policy_key)
        self._policy_keys: dict[Any, str] = {}
        self._new_links()

    @property
    def in_flight_limit(self) -> int:
        """Episodes run at once: ``max_in_flight``, at most ``envs_per_pool`` per pool."""
        return min(self.cfg.max_in_flight, self.cfg.num_env_pools * self.cfg.envs_per_pool)

    async def run(
        self, tasks: Iterable[TaskSpec], sink: ParquetSink, progress: bool = True
    ) -> dict[str, Any]:
        """Run every task ``sink.next_attempt`` allows; return the summary of this call.

        ``tasks`` may be any iterable (a generator is consumed lazily, at most
        ``in_flight_limit`` tasks ahead of the finished ones). The summary: per family
        count, success_rate, mean_reward, mean_turns, statuses and tokens; episodes,
        skipped_already_done, retried_errors (tasks run again after a task_error),
        episodes_per_s, retries and actor_replacements by actor kind, each EnvPool's node
        and load (env_pools, env_pool_nodes), each PolicyActor's load and the policies'
        own stats summed (policy_stats)."""
        total = (
            sum(1 for t in tasks if sink.next_attempt(t.id)) if isinstance(tasks, Sized) else None
        )
        first_policy = self.policies.live_actors()[0]
        desc, self._batch_turns, self._send_tasks, nodes_at_start = await asyncio.gather(
            first_policy.describe.remote(),
            first_policy.turn_batching.remote(),
            first_policy.needs_tasks.remote(),
            self._pool_nodes(),
        )
        self._policy_desc = {**desc, **self._lineage, "params": self._params}
        self._new_links()
        self._retries.clear()
        replaced_before = (self.pools.replacements, self.policies.replacements)
        stats = _Stats()
        bar = tqdm(total=total, desc="episodes", unit="ep", disable=not progress)
        todo = self._pending(tasks, sink, stats)
        # at least one worker, which also counts the skipped tasks
        n_workers = self.in_flight_limit if total is None else min(self.in_flight_limit, total)
        n_workers = max(n_workers, 1)
        workers = [
            asyncio.create_task(self._worker(todo, sink, stats, bar)) for _ in range(n_workers)
        ]
        try:
            await asyncio.gather(*workers)
        finally:
            for worker in workers:
                worker.cancel()
            sink.flush()
            bar.close()
        summary = stats.summary()
        summary.update(
            retries=dict(self._retries),
            actor_replacements={
                ENV_POOL: self.pools.replacements - replaced_before[0],
                POLICY: self.policies.replacements - replaced_before[1],
            },
            env_pool_nodes_at_start=nodes_at_start,
            **await self._actor_reports(),
        )
        return summary

    def _pending(
        self, tasks: Iterable[TaskSpec], sink: ParquetSink, stats: _Stats
    ) -> Iterator[tuple[TaskSpec, int]]:
        for task in tasks:
            attempt = sink.next_attempt(task.id)
            if attempt is None or task.id in self._running:
                stats.skipped += 1
                continue
            stats.retried += attempt > 1
            self._running.add(task.id)
            yield task, attempt

    async def _worker(
        self, todo: Iterator[tuple[TaskSpec, int]], sink: ParquetSink, stats: _Stats, bar: tqdm
    ) -> None:
        # workers share one iterator: next() runs without yielding, so no task is taken twice
        for task, attempt in todo:
            self.metrics.in_flight(len(self._running))
            record, tokens = await self._episode(task)
            record.attempt = attempt
            sink.add(record)
            self._running.discard(task.id)
            self.metrics.in_flight(len(self._running))
            stats.add(record, tokens)
            self.metrics.finished(record.task, record.status.value)
            bar.update(1)
            bar.set_postfix(stats.postfix(), refresh=False)

    async def _episode(self, task: TaskSpec) -> tuple[Trajectory, dict[str, int]]:
        """Attempts until one ends (any status) or the retries for dead actors run out."""
        start = time.perf_counter()
        failures: list[str] = []
        for attempt in range(self.cfg.max_episode_retries + 1):
            try:
                result = await self._attempt(task, attempt)
            except ActorLost as lost:
                failures.append(str(lost))
                if attempt < self.cfg.max_episode_retries:
                    self._retries[lost.kind] += 1
                    self.metrics.retry(lost.kind)
                continue
            result.timings["attempts"] = attempt + 1
            return self._record(task, result, start), _tokens(result)
        error = f"gave up after {len(failures)} attempts: " + " | ".join(failures)
        result = EpisodeResult.failed(error)
        result.timings["attempts"] = len(failures)
        return self._record(task, result, start), _tokens(result)

    async def _attempt(self, task: TaskSpec, attempt: int) -> EpisodeResult:
        """One run of ``task`` on the least-loaded EnvPool and PolicyActor; raises
        ActorLost (after replacing the actor) if either died."""
        try:
            pool = self.pools.acquire()
        except NoLiveActors as e:
            return EpisodeResult.failed(str(e))
        try:
            policy = self.policies.acquire()
        except NoLiveActors as e:
            self.pools.release(pool)
            return EpisodeResult.failed(str(e))
        pool_actor, policy_actor = pool.actor, policy.actor
        timeout = self.cfg.episode_timeout_s
        try:
            policy_key = await asyncio.wait_for(
                self._policy_key(pool_actor, policy_actor), _POOL_GRACE_S
            )
            link = self._pool_links.get(pool_actor)
            if link is None:
                link = self._pool_links[pool_actor] = PoolLink(pool_actor, self._inbox)
            episode = link.run(
                f"{task.id}#{attempt}-{next(self._episode_ids)}",
                task.model_dump(mode="json"),
                policy_key,
                self._params,
                timeout,
                self._batch_turns,
                self._send_tasks,
            )
            # the pool enforces the timeout itself; this one catches a pool that hangs
            result = await asyncio.wait_for(episode, timeout + _POOL_GRACE_S)
        except RayActorError as e:  # ActorDiedError, ActorUnavailableError
            self._pool_lost(pool, pool_actor)
            raise ActorLost(ENV_POOL, e) from e
        except asyncio.TimeoutError:
            # a healthy pool ends the episode at ``timeout`` itself: this one is stuck
            self._pool_lost(pool, pool_actor)
            raise ActorLost(
                ENV_POOL, f"env_pool actor stuck: no answer in {timeout + _POOL_GRACE_S}s"
            ) from None
        except Exception as e:  # a bug in the pool itself: recorded, not retried
            return EpisodeResult.failed(error_text(e))
        finally:
            self.pools.release(pool)
            self.policies.release(policy)
        if result.lost == POLICY_LOST:
            self.policies.lost(policy, policy_actor)
            raise ActorLost(POLICY, result.error or "policy actor lost")
        if result.lost == ENV_SERVER_LOST:  # a remote env's server: no actor to replace
            raise ActorLost(ENV_SERVER_LOST, result.error or "env server lost")
        return result

    def _new_links(self) -> None:
        """Links to the EnvPools for one ``run``: its own event loop, and its own mailbox
        in each pool, since a fetch the last run left waiting there would take (and lose)
        the first results of this one."""
        self._inbox = uuid.uuid4().hex
        self._pool_links: dict[Any, PoolLink] = {}
        self._pool_policies: dict[tuple[Any, Any], asyncio.Future] = {}

    def _pool_lost(self, slot: Slot, actor: Any) -> None:
        self._pool_links.pop(actor, None)
        self.pools.lost(slot, actor)

    async def _policy_key(self, pool_actor: Any, policy_actor: Any) -> str:
        """``policy_actor``'s key in ``pool_actor`` (``EnvPool.use_policy``): the handle goes
        to each pool once, not with every episode. Episodes that meet a new pair wait for
        the one call that hands it over; a failed hand-over is tried again next time."""
        key = self._policy_keys.setdefault(policy_actor, f"policy-{len(self._policy_keys)}")
        pair = (pool_actor, policy_actor)
        told = self._pool_policies.get(pair)
        if told is None:
            told = asyncio.ensure_future(_awaited(pool_actor.use_policy.remote(key, policy_actor)))
            self._pool_policies[pair] = told
        try:
            await asyncio.shield(told)
        except BaseException:
            if self._pool_policies.get(pair) is told and told.done():
                del self._pool_policies[pair]
            raise
        return key

    def _record(self, task: TaskSpec, result: EpisodeResult, start: float) -> Trajectory:
        timings = {**result.timings, "wall_s": time.perf_counter() - start}
        return Trajectory.from_episode(
            task,
            result,
            env_version=make_env_version(task.family),
            policy=self._policy_desc,
            timings={k: round(v, 4) for k, v in timings.items()},
        )

    async def _pool_nodes(self) -> list[str | None]:
        """The node id of each live EnvPool (None where its actor does not answer)."""
        refs = [actor.node_id.remote() for actor in self.pools.live_actors()]
        return await _gather_or_none(refs)

    async def _actor_reports(self) -> dict[str, Any]:
        """End of run: each live actor's node and load, and the policies' own stats."""
        pools, policies, policy_stats = await asyncio.gather(
            _gather_or_none([a.load.remote() for a in self.pools.live_actors()]),
            _gather_or_none([a.load.remote() for a in self.policies.live_actors()]),
            _gather_or_none([a.stats.remote() for a in self.policies.live_actors()]),
        )
        return {
            "env_pools": pools,
            "env_pool_nodes": [p["node_id"] if p else None for p in pools],
            "policy_actors": policies,
            "policy_stats": merge_stats([s for s in policy_stats if s]),
        }

    def shutdown(self) -> None:
        self.pools.shutdown()
        self.policies.shutdown()


async def _awaited(ref: Any) -> Any:
    return await ref


async def _gather_or_none(refs: list[Any]) -> list[Any]:
    async def one(ref: Any) -> Any:
        try:
            return await asyncio.wait_for(ref, _END_OF_RUN_TIMEOUT_S)
        except Exception:  # a dead or stuck actor: nothing to report from it
            return None

    return list(await asyncio.gather(*(one(r) for r in refs)))


def merge_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum numbers key by key (recursively) over the policy actors' stats; other values are
    taken from the first actor that has them."""
    out: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            mine = out.get(key)
            if isinstance(value, dict):
                out[key] = merge_stats([mine if isinstance(mine, dict) else {}, value])
            elif _is_number(value) and (mine is None or _is_number(mine)):
                out[key] = (mine or 0) + value
            else:
                out.setdefault(key, value)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _tokens(result: EpisodeResult) -> dict[str, int]:
    return {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens}


def make_env_version(family: str) -> str:
    from agentray.envs.registry import env_class

    return env_version_of(family, env_class(family).version)


class FamilyTally:
    """Running totals of one family's finished episodes (constant memory per family)."""

    def __init__(self) -> None:
        self.count = self.successes = 0
        self.reward = self.turns = 0.0
        self.statuses: Counter[str] = Counter()
        self.tokens = {"prompt_tokens": 0, "completion_tokens": 0}

    def add(self, record: Trajectory, tokens: dict[str, int] | None = None) -> None:
        self.count += 1
        self.successes += record.reward >= 1.0
        self.reward += record.reward
        self.turns += record.turns
        self.statuses[record.status.value] += 1
        for key in self.tokens:
            self.tokens[key] += (tokens or {}).get(key) or 0

    def summary(self) -> dict[str, Any]:
        n = max(self.count, 1)
        return {
            "count": self.count,
            "success_rate": self.successes / n,
            "mean_reward": self.reward / n,
            "mean_turns": self.turns / n,
            "statuses": dict(self.statuses),
        }


def summarize(records: Iterable[Trajectory]) -> dict[str, Any]:
    """count, success_rate, mean_reward, mean_turns and statuses of trajectory records."""
    tally = FamilyTally()
    for record in records:
        tally.add(record)
    return tally.summary()


class _Stats:
    def __init__(self) -> None:
        self.skipped = self.retried = 0
        self.by_family: dict[str, FamilyTally] = defaultdict(FamilyTally)
        self.started = time.perf_counter()
        self._done = self._ok = self._errors = 0

    def add(self, record: Trajectory, tokens: dict[str, int]) -> None:
        self.by_family[record.task].add(record, tokens)
        self._done += 1
        self._ok += record.reward >= 1.0
        self._errors += record.status == Status.TASK_ERROR

    def postfix(self) -> dict[str, str]:
        rate = self._done / max(time.perf_counter() - self.started, 1e-9)
        return {
            "ep/s": f"{rate:.1f}",
            "success": f"{self._ok / max(self._done, 1):.0%}",
            "errors": str(self._errors),
        }

    def summary(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.started
        families = {
            family: {**tally.summary(), "tokens": dict(tally.tokens)}
            for family, tally in sorted(self.by_family.items())
        }
        return {
            "families": families,
            "episodes": self._done,
            "skipped_already_done": self.skipped,  # recorded, not to be retried
            "retried_errors": self.retried,
            "wall_s": round(wall, 2),
            "episodes_per_s": round(self._done / max(wall, 1e-9), 2),
        }
