"""Rollout throughput against a latency-bound teacher, and the engine's per-step overhead.

    python benchmarks/rollout_throughput.py [--families db,kg] [--latency-ms 200]
        [--in-flight 256] [--episodes 1500] [--baseline-episodes 120] [--overhead-episodes 400]

1. Teacher-bound: the expert endpoint (agentray.testing.expert_endpoint, its own process)
   answers every request after ``--latency-ms``. Episodes/s of the RolloutEngine with the
   openai policy at ``--in-flight`` episodes vs an 8-worker thread pool running the same
   episodes one by one per worker (env.reset, then request -> env.step in-process, as the
   AgentBench.old client does with its 8 threads). Goals: >= 20x, and >= 80% of the
   latency-bound ideal, in_flight / (mean turns per episode * latency).
2. Orchestration overhead: the engine with the expert policy vs a raw in-process loop over
   the same envs (expert reply -> env.step), in ms per step. Goal: <= 1 ms per step more.

Tasks alternate between families, so the baseline's shorter prefix has the engine's mix.
"""

from __future__ import annotations

import argparse
import asyncio
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
    engine: RolloutEngine, tasks: list[TaskSpec], workdir: Path, name: str
) -> tuple[dict[str, float], dict[str, Any]]:
    """Warm the actors up on a few episodes, then time ``tasks`` into a fresh sink."""
    asyncio.run(engine.run(tasks[:WARMUP_EPISODES], ParquetSink(workdir / f"{name}-warmup"), False))
    out = workdir / name
    start = time.perf_counter()
    summary = asyncio.run(engine.run(tasks, ParquetSink(out, flush_every=256), progress=False))
    wall = time.perf_counter() - start
    rows = read_trajectories(out)
    statuses: dict[str, int] = {}
    for row in rows:
        statuses[row.status.value] = statuses.get(row.status.value, 0) + 1
    result = outcome([r.turns for r in rows], [r.reward for r in rows], wall)
    return result, {"statuses": statuses, "summary": summary}


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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="db,kg")
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--env-pools", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=1500, help="engine, teacher-bound")
    parser.add_argument("--baseline-episodes", type=int, default=120)
    parser.add_argument("--overhead-episodes", type=int, default=400)
    args = parser.parse_args()
    families = args.families.split(",")
    n_tasks = max(args.episodes, args.baseline_episodes, args.overhead_episodes)
    per_family = math.ceil(n_tasks / len(families))
    family_configs = {f: {"n_train": per_family, "n_test": 1} for f in families}
    tasks = interleaved_tasks(families, family_configs, n_tasks)
    latency_s = args.latency_ms / 1000
    print(
        f"rollout throughput: families {families}, {os.cpu_count()} CPUs, python "
        f"{sys.version.split()[0]}, teacher latency {args.latency_ms:.0f} ms, "
        f"load average {os.getloadavg()[0]:.1f}"
    )

    endpoint_cfg = EndpointConfig(
        families=families, family_configs=family_configs, latency_ms=args.latency_ms
    )
    with EndpointProcess(endpoint_cfg) as ep, tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        base = thread_pool_baseline(
            tasks[: args.baseline_episodes], family_configs, ep.base_url, BASELINE_WORKERS
        )

        ensure_ray()
        policy = OpenAIConfig(
            model="expert",
            base_url=ep.base_url,
            max_concurrency=args.in_flight,
            timeout_s=60,
            max_retries=3,
        )
        engine = RolloutEngine(
            rollout_config(args.in_flight, args.env_pools), policy, family_configs
        )
        try:
            ep_stats_before = ep.stats()
            eng, extra = engine_run(engine, tasks[: args.episodes], workdir, "teacher")
            ep_stats = ep.stats()
        finally:
            engine.shutdown()

        expert_engine = RolloutEngine(
            rollout_config(args.in_flight, args.env_pools),
            ExpertConfig(),
            family_configs,
        )
        try:
            overhead_tasks = tasks[: args.overhead_episodes]
            eng_expert, _ = engine_run(expert_engine, overhead_tasks, workdir, "expert")
        finally:
            expert_engine.shutdown()
        raw = raw_loop(overhead_tasks, family_configs)

    print(f"\n1. teacher-bound ({args.latency_ms:.0f} ms per request)")
    show(f"thread pool, {BASELINE_WORKERS} workers", base)
    show(f"RolloutEngine, {args.in_flight} in flight", eng)
    ratio = eng["episodes_per_s"] / base["episodes_per_s"]
    ideal = args.in_flight / (eng["mean_turns"] * latency_s)
    base_ideal = BASELINE_WORKERS / (base["mean_turns"] * latency_s)
    served = ep_stats["requests"] - ep_stats_before["requests"]
    print(f"  engine / thread pool: {ratio:.1f}x  (goal >= 20x)")
    print(
        f"  engine: {eng['episodes_per_s'] / ideal:.0%} of the latency-bound ideal "
        f"{ideal:.1f} ep/s (goal >= 80%); thread pool: "
        f"{base['episodes_per_s'] / base_ideal:.0%} of its ideal {base_ideal:.1f} ep/s"
    )
    print(
        f"  endpoint: {served} requests in the engine runs, at most "
        f"{ep_stats['max_in_flight']} in flight; statuses {extra['statuses']}"
    )
    policy_stats = extra["summary"].get("policy_stats")
    if policy_stats:
        keys = ("requests", "retries", "errors", "prompt_tokens", "completion_tokens")
        print("  policy stats: " + ", ".join(f"{k} {policy_stats.get(k)}" for k in keys))

    print(f"  (load average at the end: {os.getloadavg()[0]:.1f})")
    per_step_engine = eng_expert["wall_s"] / eng_expert["steps"] * 1000
    per_step_raw = raw["wall_s"] / raw["steps"] * 1000
    print("\n2. orchestration overhead (expert policy, no teacher latency)")
    show(f"RolloutEngine, {args.in_flight} in flight", eng_expert)
    show("raw in-process loop", raw)
    print(
        f"  per step: engine {per_step_engine:.3f} ms, raw loop {per_step_raw:.3f} ms, "
        f"overhead {per_step_engine - per_step_raw:.3f} ms (goal <= 1 ms)"
    )


if __name__ == "__main__":
    main()
