"""Reset and step latency (p50 / p99) and expert episodes per second, for every family.

    python benchmarks/env_latency.py [--episodes 200] [--families db,os,...]

Budget (issue 3): reset p50 <= 20 ms and step p50 <= 5 ms for every family but OS;
OS: reset + one command p50 <= 30 ms. Each row prints its measured / budget ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

from rich.console import Console
from rich.table import Table

from agentray.envs.episode import run_episode, scripted
from agentray.envs.registry import family_names, make_env

RESET_BUDGET_S, STEP_BUDGET_S, OS_RESET_PLUS_COMMAND_BUDGET_S = 0.020, 0.005, 0.030


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(family: str, episodes: int) -> dict[str, float]:
    env = make_env(family)
    tasks = env.tasks("train") + env.tasks("test")
    plans = {t.id: env.expert_actions(t) for t in tasks}
    resets, steps, first_steps, rewards = [], [], [], []
    start = time.perf_counter()
    for i in range(episodes):
        task = tasks[i % len(tasks)]
        episode = run_episode(env, task, scripted(plans[task.id]), close=True)
        resets.append(episode.reset_s)
        steps.extend(episode.step_s)
        if episode.step_s:
            first_steps.append(episode.reset_s + episode.step_s[0])
        if episode.result.done:
            rewards.append(episode.result.reward)
    wall = time.perf_counter() - start
    return {
        "reset_p50": statistics.median(resets),
        "reset_p99": percentile(resets, 0.99),
        "step_p50": statistics.median(steps),
        "step_p99": percentile(steps, 0.99),
        "reset_plus_step_p50": statistics.median(first_steps),
        "episodes_per_s": episodes / wall,
        "mean_reward": statistics.fmean(rewards) if rewards else 0.0,
    }


def budget_ratio(family: str, m: dict[str, float]) -> float:
    if family == "os":
        return m["reset_plus_step_p50"] / OS_RESET_PLUS_COMMAND_BUDGET_S
    return max(m["reset_p50"] / RESET_BUDGET_S, m["step_p50"] / STEP_BUDGET_S)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--families", default=",".join(family_names()))
    args = parser.parse_args()
    table = Table(title=f"env latency, {args.episodes} expert episodes per family")
    for column in (
        "family",
        "reset p50",
        "reset p99",
        "step p50",
        "step p99",
        "episodes/s",
        "expert reward",
        "p50 / budget",
    ):
        table.add_column(column, justify="right")
    for family in args.families.split(","):
        m = measure(family, args.episodes)
        ratio = budget_ratio(family, m)
        table.add_row(
            family,
            _ms(m["reset_p50"]),
            _ms(m["reset_p99"]),
            _ms(m["step_p50"]),
            _ms(m["step_p99"]),
            f"{m['episodes_per_s']:.1f}",
            f"{m['mean_reward']:.3f}",
            f"{ratio:.3f} {'ok' if ratio <= 1 else 'OVER'}",
        )
    Console(width=150).print(table)
    print("p50 / budget: measured p50 over its budget (OS: reset + first command); <= 1 meets it")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


if __name__ == "__main__":
    main()
