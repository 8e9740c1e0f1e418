"""Episodes/s of a family played locally vs behind each remote protocol on 127.0.0.1, at
64 and 256 episodes in flight: what the HTTP hop costs.

    python benchmarks/remote_envs.py [--family db] [--tasks 384] [--in-flight 64,256]

Each protocol's server is ``agentray env serve`` in a child process (its own interpreter;
openenv only where openenv-core is installed: ``pip install 'agentray[openenv]'``);
the same tasks are collected with the expert policy through the rollout engine (2 EnvPools)
locally and through each remote family. Rows print episodes/s and the ratio to local.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile

from rich.console import Console
from rich.table import Table

from agentray.collect.config import RolloutConfig
from agentray.collect.engine import RolloutEngine, load_tasks
from agentray.collect.sink import ParquetSink
from agentray.envs.remote.openenv import openenv_missing
from agentray.envs.remote.serve import PROTOCOLS, ServerProcess
from agentray.policies.registry import ExpertConfig
from agentray.ray_utils import ensure_ray
from agentray.types import Status


def episodes_per_s(family: str, envs: dict, in_flight: int) -> tuple[float, int]:
    """(episodes/s, completed episodes) of one collect of ``family``'s train split."""
    rollout = RolloutConfig(
        max_in_flight=in_flight,
        num_env_pools=2,
        envs_per_pool=max(in_flight // 2, 1),
        metrics=False,
        flush_every=1024,
    )
    tasks = load_tasks([family], "train", envs)
    engine = RolloutEngine(rollout, ExpertConfig(), envs)
    try:
        with tempfile.TemporaryDirectory() as out:
            summary = asyncio.run(engine.run(tasks, ParquetSink(out), progress=False))
    finally:
        engine.shutdown()
    statuses = summary["families"][family]["statuses"]
    return summary["episodes_per_s"], statuses.get(Status.COMPLETED.value, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="db")
    parser.add_argument("--tasks", type=int, default=384, help="train tasks per run")
    parser.add_argument("--in-flight", default="64,256")
    args = parser.parse_args()
    settings = {"n_train": args.tasks, "n_test": 1}
    ensure_ray(num_cpus=2)
    table = Table(title=f"{args.family}: {args.tasks} expert episodes per run, 127.0.0.1")
    for column in ("in flight", "backend", "episodes/s", "completed", "vs local"):
        table.add_column(column, justify="right")
    protocols = [p for p in PROTOCOLS if p != "openenv" or not openenv_missing()]
    servers = {p: ServerProcess(args.family, p, settings).start() for p in protocols}
    try:
        for in_flight in (int(x) for x in args.in_flight.split(",")):
            local, done = episodes_per_s(args.family, {args.family: settings}, in_flight)
            table.add_row(str(in_flight), "local", f"{local:.1f}", str(done), "1.00")
            for protocol, server in servers.items():
                url = f"{server.url}/api" if protocol == "agentbench" else server.url
                envs = {protocol: {"urls": [url]}}
                rate, done = episodes_per_s(protocol, envs, in_flight)
                table.add_row(
                    str(in_flight), protocol, f"{rate:.1f}", str(done), f"{rate / local:.2f}"
                )
    finally:
        for server in servers.values():
            server.stop()
    Console().print(table)


if __name__ == "__main__":
    main()
