"""Rollout throughput against a latency-bound teacher, and the engine's per-step overhead.

    python benchmarks/rollout_throughput.py [--families db,kg] [--latency-ms 200]
        [--in-flight 256] [--episodes 1500] [--baseline-episodes 120]
        [--clients lean,sdk] [--realistic-latency-ms 1000] [--realistic-in-flight 1024]
        [--realistic-episodes 16384] [--overhead-episodes 400]

1. Teacher-bound: the expert endpoint (agentray.testing.expert_endpoint, its own process)
   answers every request after ``--latency-ms``. Episodes/s of the RolloutEngine with the
   openai policy at ``--in-flight`` episodes, once per OpenAI client (lean, sdk), vs an
   8-worker thread pool running the same episodes one by one per worker (env.reset, then
   request -> env.step in-process, as the AgentBench.old client does with its 8 threads).
   Goals: >= 20x, and >= 80% of the latency-bound ideal, in_flight / (mean turns per
   episode * latency). Also printed: the share of the schedule bound, what a zero-overhead
   engine reaches on the same episodes (``schedule_bound``: the naive ideal assumes
   in_flight episodes to the end, but the last ones drain with fewer in flight; on the
   realistic row's 16,384 db/kg tasks, 16 per slot, that tail alone caps the naive share
   at ~93%; at 6,144 tasks, ~84%). Per client: CPU per teacher request of the policy
   actor's process (goal <= 0.5 ms) and of the endpoint's, over the timed run.
2. A realistic teacher (a GPT-4-class endpoint): ``--realistic-latency-ms`` per request,
   ``--realistic-in-flight`` episodes, the default (lean) client, as a share of the
   latency-bound ideal (goal >= 85%).
3. Orchestration overhead: the engine with the expert policy vs a raw in-process loop over
   the same envs (expert reply -> env.step), in ms per step. Goal: <= 1 ms per step more.

Tasks alternate between families, so the baseline's shorter prefix has the engine's mix.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import math
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import openai
import psutil
import ray

from agentray.collect.config import RolloutConfig
from agentray.collect.engine import RolloutEngine
from agentray.collect.sink import ParquetSink, read_trajectories
from agentray.envs.episode import run_episode
from agentray.envs.registry import make_env
from agentray.model.chat import chat_messages
from agentray.policies.expert import next_action
from agentray.policies.registry import ExpertConfig, OpenAIConfig
from agentray.ray_utils import ensure_ray
from agentray.testing.endpoint_process import EndpointProcess
from agentray.testing.expert_endpoint import EndpointConfig
from agentray.types import Message, TaskSpec

BASELINE_WORKERS = 8  # the AgentBench.old client's default
WARMUP_EPISODES = 32


def interleaved_tasks(families: list[str], family_configs: dict, n: int) -> list[TaskSpec]:
    per_family = [make_env(f, family_configs[f]).tasks("train") for f in families]
    mixed = [t for group in itertools.zip_longest(*per_family) for t in group if t is not None]
    if len(mixed) < n:
        raise SystemExit(f"only {len(mixed)} tasks; raise n_train")
    return mixed[:n]


def outcome(turns: list[int], rewards: list[float], wall_s: float) -> dict[str, float]:
    return {
        "episodes": len(turns),
        "wall_s": wall_s,
        "episodes_per_s": len(turns) / wall_s,
        "steps": sum(turns),
        "mean_turns": statistics.fmean(turns),
        "success": sum(r >= 1.0 for r in rewards) / len(rewards),
    }


# -- the baseline: N threads, one episode at a time each -----------------------------------


def thread_pool_baseline(
    tasks: list[TaskSpec], family_configs: dict, base_url: str, workers: int
) -> dict[str, float]:
    client = openai.OpenAI(base_url=base_url, api_key="EMPTY", timeout=60)
    todo: queue.Queue[TaskSpec] = queue.Queue()
    for task in tasks:
        todo.put(task)
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def reply(messages: list[Message]) -> str:
        response = client.chat.completions.create(
            model="expert", messages=chat_messages(messages), temperature=0.0
        )
        return response.choices[0].message.content or ""

    def worker() -> None:
        envs = {f: make_env(f, cfg) for f, cfg in family_configs.items()}
        while True:
            try:
                task = todo.get_nowait()
            except queue.Empty:
                return
            episode = run_episode(envs[task.family], task, reply, close=True)
            with lock:
                results.append((len(episode.step_s), episode.result.reward))

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    return outcome([t for t, _ in results], [r for _, r in results], wall)


# -- the engine ----------------------------------------------------------------------------


def engine_run(
    engine: RolloutEngine,
    tasks: list[TaskSpec],
    workdir: Path,
    name: str,
    endpoint: EndpointProcess | None = None,
) -> tuple[dict[str, float], dict[str, Any]]:
    """Warm the actors up on a few episodes, then time ``tasks`` into a fresh sink; with
    an ``endpoint``, the CPU per teacher request of the policy actors and of the endpoint
    over the timed run."""
    asyncio.run(engine.run(tasks[:WARMUP_EPISODES], ParquetSink(workdir / f"{name}-warmup"), False))
    out = workdir / name
    before = cpu_reading(engine, endpoint)
    start = time.perf_counter()
    summary = asyncio.run(engine.run(tasks, ParquetSink(out, flush_every=256), progress=False))
    wall = time.perf_counter() - start
    after = cpu_reading(engine, endpoint)
    rows = read_trajectories(out)
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row.status.value] = statuses.get(row.status.value, 0) + 1
    result = outcome([r.turns for r in rows], [r.reward for r in rows], wall)
    position = {task.id: i for i, task in enumerate(tasks)}
    result["turns_in_task_order"] = [
        r.turns for r in sorted(rows, key=lambda r: position.get(r.id, len(position)))
    ]
    requests = after["requests"] - before["requests"]
    if endpoint is not None and requests > 0:
        result["client_cpu_ms"] = (after["client_cpu_s"] - before["client_cpu_s"]) / requests * 1e3
        served = after["served"] - before["served"]
        result["endpoint_cpu_ms"] = (
            (after["endpoint_cpu_s"] - before["endpoint_cpu_s"]) / served * 1e3
        )
        for key in ("pools", "driver"):
            spent = after[f"{key}_cpu_s"] - before[f"{key}_cpu_s"]
            result[f"{key}_cpu_ms_per_step"] = spent / result["steps"] * 1e3
    return result, {"statuses": statuses, "summary": summary, "requests": requests}


def cpu_reading(engine: RolloutEngine, endpoint: EndpointProcess | None) -> dict[str, float]:
    """CPU seconds so far of the policy actors, the endpoint, the EnvPools and this driver,
    and the requests the policies sent and the endpoint served."""
    if endpoint is None:
        return {"requests": 0}
    actors = engine.policies.live_actors()
    loads = ray.get([a.load.remote() for a in actors])
    stats = ray.get([a.stats.remote() for a in actors])
    pool_pids = ray.get([a.pid.remote() for a in engine.pools.live_actors()])
    return {
        "client_cpu_s": sum(load["cpu_s"] for load in loads),
        "requests": sum(s.get("requests", 0) for s in stats),
        "endpoint_cpu_s": endpoint.cpu_s(),
        "served": endpoint.stats()["requests"],
        "pools_cpu_s": sum(_process_cpu_s(pid) for pid in pool_pids),
        "driver_cpu_s": time.process_time(),
    }


def _process_cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def teacher_run(
    endpoint: EndpointProcess,
    client: str,
    rollout: RolloutConfig,
    family_configs: dict,
    tasks: list[TaskSpec],
    workdir: Path,
) -> tuple[dict[str, float], dict[str, Any]]:
    """The engine with the openai policy on ``client`` against ``endpoint``, timed."""
    policy = OpenAIConfig(
        model="expert",
        base_url=endpoint.base_url,
        max_concurrency=rollout.max_in_flight,
        timeout_s=60,
        max_retries=3,
        client=client,
    )
    engine = RolloutEngine(rollout, policy, family_configs)
    try:
        name = f"teacher-{client}-{rollout.max_in_flight}"
        return engine_run(engine, tasks, workdir, name, endpoint)
    finally:
        engine.shutdown()


def rollout_config(in_flight: int, pools: int) -> RolloutConfig:
    return RolloutConfig(
        max_in_flight=in_flight,
        num_env_pools=pools,
        envs_per_pool=math.ceil(in_flight / pools),
        max_batch_size=in_flight,
        flush_every=256,
    )


# -- the raw loop for the overhead figure ----------------------------------------------------


def raw_loop(tasks: list[TaskSpec], family_configs: dict) -> dict[str, float]:
    """The expert on each task in this process (it plays the task it is given, as in the
    engine, where the task travels with its episode)."""
    envs = {f: make_env(f, cfg) for f, cfg in family_configs.items()}
    turns, rewards = [], []
    start = time.perf_counter()
    for task in tasks:
        env = envs[task.family]
        episode = run_episode(
            env,
            task,
            lambda messages, env=env, task=task: next_action(env, task, messages),
            close=True,
        )
        turns.append(len(episode.step_s))
        rewards.append(episode.result.reward)
    return outcome(turns, rewards, time.perf_counter() - start)


def show(label: str, m: dict[str, float]) -> None:
    print(
        f"  {label:<34} {m['episodes']:>5} episodes  {m['steps']:>6} steps  "
        f"{m['wall_s']:7.2f} s  {m['episodes_per_s']:8.2f} ep/s  "
        f"{m['mean_turns']:.2f} turns/ep  success {m['success']:.0%}"
    )


def main() -> None:
    args = parse_args()
    families = args.families.split(",")
    clients = args.clients.split(",")
    n_tasks = max(
        args.episodes, args.baseline_episodes, args.overhead_episodes, args.realistic_episodes
    )
    per_family = math.ceil(n_tasks / len(families))
    family_configs = {f: {"n_train": per_family, "n_test": 1} for f in families}
    tasks = interleaved_tasks(families, family_configs, n_tasks)
    print(
        f"rollout throughput: families {families}, {os.cpu_count()} CPUs, python "
        f"{sys.version.split()[0]}, teacher latency {args.latency_ms:.0f} ms, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    rollout = rollout_config(args.in_flight, args.env_pools)
    endpoint_cfg = EndpointConfig(
        families=families, family_configs=family_configs, latency_ms=args.latency_ms
    )
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with EndpointProcess(endpoint_cfg) as ep:
            base = thread_pool_baseline(
                tasks[: args.baseline_episodes], family_configs, ep.base_url, BASELINE_WORKERS
            )
            ensure_ray()
            runs = {
                client: teacher_run(
                    ep, client, rollout, family_configs, tasks[: args.episodes], workdir
                )
                for client in clients
            }
            max_in_flight = ep.stats()["max_in_flight"]
        realistic = None
        if args.realistic_episodes:
            slow = endpoint_cfg.model_copy(update={"latency_ms": args.realistic_latency_ms})
            with EndpointProcess(slow) as ep:
                realistic = teacher_run(
                    ep,
                    clients[0],
                    rollout_config(args.realistic_in_flight, args.env_pools),
                    family_configs,
                    tasks[: args.realistic_episodes],
                    workdir,
                )
        overhead_tasks = tasks[: args.overhead_episodes]
        expert_engine = RolloutEngine(rollout, ExpertConfig(), family_configs)
        try:
            eng_expert, _ = engine_run(expert_engine, overhead_tasks, workdir, "expert")
        finally:
            expert_engine.shutdown()
        raw = raw_loop(overhead_tasks, family_configs)

    print(f"\n1. teacher-bound ({args.latency_ms:.0f} ms per request)")
    show(f"thread pool, {BASELINE_WORKERS} workers", base)
    base_ideal = BASELINE_WORKERS / (base["mean_turns"] * args.latency_ms / 1000)
    print(
        f"  thread pool: {base['episodes_per_s'] / base_ideal:.0%} of its ideal {base_ideal:.1f} ep/s"
    )
    for client, (eng, extra) in runs.items():
        show(f"RolloutEngine ({client}), {args.in_flight} in flight", eng)
        ratio = eng["episodes_per_s"] / base["episodes_per_s"]
        print(
            f"    {client}: {ratio:.1f}x the thread pool (goal >= 20x), "
            f"{share_of_ideal(eng, args.in_flight, args.latency_ms)} (goal >= 80%)"
        )
        show_cpu(client, eng, extra)
    print(f"  endpoint: at most {max_in_flight} requests in flight")
    if realistic is not None:
        eng, extra = realistic
        print(
            f"\n2. realistic teacher ({args.realistic_latency_ms:.0f} ms per request, "
            f"{args.realistic_in_flight} in flight, {clients[0]} client)"
        )
        show(f"RolloutEngine, {args.realistic_in_flight} in flight", eng)
        print(
            f"    {share_of_ideal(eng, args.realistic_in_flight, args.realistic_latency_ms)}"
            " (goal >= 85%)"
        )
        show_cpu(clients[0], eng, extra)

    print(f"  (load average at the end: {os.getloadavg()[0]:.1f})")
    per_step_engine = eng_expert["wall_s"] / eng_expert["steps"] * 1000
    per_step_raw = raw["wall_s"] / raw["steps"] * 1000
    print("\n3. orchestration overhead (expert policy, no teacher latency)")
    show(f"RolloutEngine, {args.in_flight} in flight", eng_expert)
    show("raw in-process loop", raw)
    print(
        f"  per step: engine {per_step_engine:.3f} ms, raw loop {per_step_raw:.3f} ms, "
        f"overhead {per_step_engine - per_step_raw:.3f} ms (goal <= 1 ms)"
    )
    failed = [c for c, (eng, _) in runs.items() if eng["success"] < 0.5]
    if failed:
        raise SystemExit(f"most episodes failed with the {', '.join(failed)} client")


def share_of_ideal(eng: dict[str, Any], in_flight: int, latency_ms: float) -> str:
    ideal = in_flight / (eng["mean_turns"] * latency_ms / 1000)
    bound = schedule_bound(eng["turns_in_task_order"], in_flight, latency_ms / 1000)
    return (
        f"{eng['episodes_per_s'] / ideal:.0%} of the latency-bound ideal {ideal:.1f} ep/s, "
        f"{eng['episodes_per_s'] / bound:.0%} of the schedule bound {bound:.1f} ep/s"
    )


def schedule_bound(turns: list[int], in_flight: int, latency_s: float) -> float:
    """Episodes/s of a zero-overhead engine on the same episodes: started in task order on
    ``in_flight`` slots, each turn exactly ``latency_s``, no CPU. Unlike in_flight / (mean
    turns * latency) it counts the tail, where the last episodes drain with fewer in flight
    once every task has started."""
    slots = [0.0] * in_flight
    end = 0.0
    for n in turns:
        done = heapq.heappop(slots) + n * latency_s
        end = max(end, done)
        heapq.heappush(slots, done)
    return len(turns) / end


def show_cpu(client: str, eng: dict[str, float], extra: dict[str, Any]) -> None:
    print(
        f"    {client}: client CPU {eng.get('client_cpu_ms', float('nan')):.3f} ms per "
        f"request (policy actor process; goal <= 0.5 ms), endpoint CPU "
        f"{eng.get('endpoint_cpu_ms', float('nan')):.3f} ms per request; "
        f"{extra['requests']} requests, statuses {extra['statuses']}"
    )
    if "pools_cpu_ms_per_step" in eng:
        show_cpu_bound(eng, extra["requests"])
    stats = extra["summary"].get("policy_stats") or {}
    keys = ("retries", "errors", "prompt_tokens", "completion_tokens")
    print("    policy stats (whole engine): " + ", ".join(f"{k} {stats.get(k)}" for k in keys))


def show_cpu_bound(eng: dict[str, float], requests: int) -> None:
    """What the machine's cores allow: every process's CPU per env step, summed."""
    per_request = eng["client_cpu_ms"] + eng["endpoint_cpu_ms"]
    per_step = (
        per_request * requests / eng["steps"]
        + eng["pools_cpu_ms_per_step"]
        + eng["driver_cpu_ms_per_step"]
    )
    cores = os.cpu_count() or 1
    print(
        f"    CPU per step: env pools {eng['pools_cpu_ms_per_step']:.3f} ms, driver "
        f"{eng['driver_cpu_ms_per_step']:.3f} ms, with client and endpoint {per_step:.3f} ms: "
        f"{cores} cores allow at most {cores / per_step * 1e3:.0f} steps/s; this run "
        f"{eng['steps'] / eng['wall_s']:.0f} steps/s"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="db,kg")
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--env-pools", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=1500, help="engine, teacher-bound")
    parser.add_argument("--clients", default="lean,sdk", help="OpenAIConfig.client values")
    parser.add_argument("--baseline-episodes", type=int, default=120)
    parser.add_argument("--realistic-latency-ms", type=float, default=1000.0)
    parser.add_argument("--realistic-in-flight", type=int, default=1024)
    parser.add_argument(
        "--realistic-episodes", type=int, default=16384, help="0 skips the realistic row"
    )
    parser.add_argument("--overhead-episodes", type=int, default=400)
    return parser.parse_args()


if __name__ == "__main__":
    main()
