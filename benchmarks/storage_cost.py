"""What object storage costs, and what attaching to a running cluster saves.

    python benchmarks/storage_cost.py [--families db,kg] [--tasks 8]

1. The same small pipeline (the quickstart's loop: collect, process, train, serve, eval)
   twice on one running local Ray cluster, side by side: ``run_dir`` on local disk, then on
   a real S3 server on this machine (SeaweedFS, agentray.testing.s3). Seconds per stage and
   the ratio S3 / local.
2. A stage's start-up: ``ensure_ray()`` in a fresh process that attaches to a running
   cluster (``RAY_ADDRESS``), vs one that starts its own Ray (a cold ``ray.init()``), the
   median of ``--reps`` each. The ratio cold / attach is what ``--address`` saves per command.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from rich.console import Console
from rich.table import Table

from agentray import storage
from agentray.pipeline import quickstart_config, run_pipeline
from agentray.ray_utils import ensure_ray
from agentray.testing import free_port
from agentray.testing.cluster import LocalCluster
from agentray.testing.s3 import S3Server

STAGES = ("collect", "process", "train", "serve", "eval")
START = "import time; t = time.perf_counter(); from agentray.ray_utils import ensure_ray; ensure_ray(); print(time.perf_counter() - t)"


def pipeline_seconds(run_dir: str, families: list[str], tasks: int, port: int) -> dict[str, float]:
    cfg = quickstart_config(run_dir, families)
    cfg.collect.max_tasks_per_family = tasks
    cfg.eval.max_tasks_per_family = tasks
    cfg.serve.port = port  # Serve keeps the port it first started with on a cluster
    return run_pipeline(cfg)["timings_s"]


def startup_seconds(env: dict[str, str], reps: int) -> float:
    times = []
    for _ in range(reps):
        out = subprocess.run(
            [sys.executable, "-c", START], env=env, capture_output=True, text=True, check=True
        )
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def storage_table(families: list[str], tasks: int) -> Table:
    with S3Server() as server:
        os.environ.update(server.env())
        bucket = server.create_bucket("bench")
        ensure_ray()  # one cluster for both runs; its workers get the AWS_* variables
        port = free_port()
        local = pipeline_seconds(tempfile.mkdtemp(prefix="bench-local-"), families, tasks, port)
        remote = pipeline_seconds(storage.join(bucket, "run"), families, tasks, port)
    table = Table(title=f"pipeline per stage: local disk vs S3 (SeaweedFS), {families}")
    for column in ("stage", "local s", "s3 s", "s3 / local"):
        table.add_column(column, justify="right")
    for stage in (*STAGES, "total"):
        a = sum(local.values()) if stage == "total" else local[stage]
        b = sum(remote.values()) if stage == "total" else remote[stage]
        table.add_row(stage, f"{a:.1f}", f"{b:.1f}", f"{b / a:.2f}x")
    return table


def startup_table(reps: int) -> Table:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cold = startup_seconds(env, reps)
    with LocalCluster(env) as cluster:
        cluster.start_head(num_cpus=2)
        cluster.wait_for_nodes(1)
        attach = startup_seconds({**cluster.env, "RAY_ADDRESS": cluster.address}, reps)
    table = Table(title=f"a stage's Ray start-up, median of {reps}")
    for column in ("cold ray.init() s", "attach (RAY_ADDRESS) s", "cold / attach"):
        table.add_column(column, justify="right")
    table.add_row(f"{cold:.2f}", f"{attach:.2f}", f"{cold / attach:.1f}x")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="db,kg")
    parser.add_argument("--tasks", type=int, default=8, help="tasks per family, collect and eval")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--skip-pipeline", action="store_true")
    args = parser.parse_args()
    console = Console()
    started = time.time()
    console.print(startup_table(args.reps))
    if not args.skip_pipeline:
        console.print(storage_table(args.families.split(","), args.tasks))
    console.print(f"benchmark wall time {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()
