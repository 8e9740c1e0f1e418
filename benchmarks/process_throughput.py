"""Process-stage throughput: the Ray Data pipeline vs a plain single-process loop, same work.

    python benchmarks/process_throughput.py [--agent-per-family 150] [--packing] [--workers 2]
                                            [--repeat 3] [--cpus N]
    python benchmarks/process_throughput.py --nodes 2 [--cpus-per-node 1]

Data: expert trajectories of every env family (played straight against the envs, written
as trajectory parquet the way collection writes it) plus the bundled ShareGPT file.
Work, both ways: classify every trajectory (status, reward threshold, action format, turn
limits), drop duplicates, clean every general record, tokenize the agent records and the
general records the eta = 0.2 mix draws, plan the mix and (with --packing) pack.

  plain loop      those steps as one Python loop in this process (agentray.process functions)
  ray data cold   run_process on a running local Ray cluster, first run (workers load the
                  tokenizer; the Ray start-up itself is timed apart, as "ray start")
  ray data warm   the same again (worker processes already up, their tokenizer loaded)
records/s counts the records read: trajectories + general records. The plain loop and the
warm pipeline run in turns (--repeat times each) and the medians are compared: on a shared
machine the load changes from minute to minute.

With --nodes N: the scaling figure instead. A real multi-node Ray cluster on this machine
(``ray start`` head + nodes, agentray.testing.cluster), each node --cpus-per-node CPUs: the
warm pipeline on the head alone, then again after N - 1 nodes joined (their first run is
cold, not counted), same data, same settings.

Then where the pipeline's time goes, per step of the stage (console.STEPS), for each run:
its wall time, the Ray Data executions it started and the seconds inside them (from the
start of an execution until its executor shuts down; a Ray Data internal, "n/a" if that
moves), so what is left is driver-side work.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from agentray.collect.sink import ParquetSink, read_trajectories
from agentray.envs.play import expert_trajectory
from agentray.envs.registry import family_names, make_env
from agentray.model.packing import pack_examples
from agentray.model.tiny import TINY_MODEL
from agentray.process.agentinstruct import classify_trajectory, drop_duplicates
from agentray.process.config import ProcessConfig
from agentray.process.general import classify_general, iter_general
from agentray.process.mix import plan_mix
from agentray.process.run import run_process
from agentray.process.tokenize import encode_pieces, load_tokenizer
from agentray.ray_utils import ensure_ray


def write_trajectories(out: Path, per_family: int) -> int:
    sink = ParquetSink(out, flush_every=256)
    n = 0
    for family in family_names():
        env = make_env(family)
        count = per_family if family != "os" else max(1, per_family // 4)  # OS runs bash
        for task in env.tasks("train")[:count]:
            sink.add(expert_trajectory(env, task))
            n += 1
        env.close()
    sink.flush()
    return n


def plain_loop(cfg: ProcessConfig, trajectories: Path) -> dict[str, int]:
    """The process stage's work, one record at a time, in this process."""
    tokenizer = load_tokenizer(cfg.model, cfg.chat_template)
    rows = read_trajectories(trajectories)
    classified = [classify_trajectory(row, cfg) for row in rows]
    kept, _ = drop_duplicates([r for r in classified if not r["reject_reason"]])
    general_rows = [classify_general(r, i) for i, r in enumerate(iter_general(cfg.general_data))]
    general = [r for r in general_rows if not r["reject_reason"]]
    agent_examples = _tokenize(tokenizer, kept, cfg, "cut")
    wanted = round(len(agent_examples) * (1 - cfg.eta) / cfg.eta)
    order = sorted(general, key=lambda r: r["id"])
    random.Random(cfg.seed).shuffle(order)
    general_examples = _tokenize(tokenizer, order[: wanted + wanted // 4 + 8], cfg, "split")
    plan = plan_mix(
        [(e["id"], e["num_tokens"]) for e in agent_examples],
        [(e["id"], e["num_tokens"]) for e in general_examples],
        cfg.eta,
    )
    chosen = set(plan.general_ids)
    mixed = agent_examples + [e for e in general_examples if e["id"] in chosen]
    packs = pack_examples(mixed, cfg.max_seq_len) if cfg.packing.enabled else mixed
    return {"records_read": len(rows) + len(general_rows), "rows_out": len(packs)}


def _tokenize(tokenizer, records, cfg: ProcessConfig, too_long) -> list[dict]:
    out = []
    for record in records:
        try:
            pieces = encode_pieces(
                tokenizer, json.loads(record["conversations"]), cfg.max_seq_len, too_long
            )
        except ValueError:
            continue
        out += [
            {"id": record["id"] if k == 0 else f"{record['id']}#{k}", "source": record["source"]}
            | piece
            for k, piece in enumerate(pieces)
        ]
    return out


def _count_ray_data_executions() -> list[float]:
    """A list that gets the seconds of each Ray Data execution from now on (empty and left
    so if Ray Data's executor has moved)."""
    found: list[float] = []
    try:
        from ray.data._internal.execution.streaming_executor import StreamingExecutor
    except ImportError:
        return found
    execute, shutdown = StreamingExecutor.execute, StreamingExecutor.shutdown

    def timed_execute(self, *args, **kwargs):
        self._bench_started = time.perf_counter()
        return execute(self, *args, **kwargs)

    def timed_shutdown(self, *args, **kwargs):
        if getattr(self, "_bench_started", None) is not None:
            found.append(time.perf_counter() - self._bench_started)
            self._bench_started = None
        return shutdown(self, *args, **kwargs)

    StreamingExecutor.execute, StreamingExecutor.shutdown = timed_execute, timed_shutdown
    return found


def _fixed_cost(cfg: ProcessConfig) -> float:
    """Seconds of one tokenizer pass (the pipeline's single Ray Data execution) over 8 tiny
    records: what a pass costs whatever its size."""
    from agentray.process.tokenize_pass import _tokenize_items

    turns = [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]
    items = [
        {
            "id": f"t{i}",
            "source": "general",
            "family": "general",
            "conversations": json.dumps(turns),
        }
        for i in range(8)
    ]
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        _tokenize_items(items, cfg)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def _timing_table(timings: dict[str, list[float]], records: int, examples: int) -> Table:
    table = Table(title=f"{records} records read -> {examples} examples")
    for column in ("pipeline", "seconds (median)", "all runs", "records/s", "vs plain loop"):
        table.add_column(column, justify="left" if column == "pipeline" else "right")
    plain = statistics.median(timings["plain loop"])
    for label, runs in timings.items():
        seconds = statistics.median(runs)
        table.add_row(
            label,
            f"{seconds:.1f}",
            " ".join(f"{r:.1f}" for r in runs),
            f"{records / seconds:,.0f}",
            f"{plain / seconds:.2f}x",
        )
    return table


def _profile_table(profiles: dict[str, tuple[dict[str, float], list[float]]]) -> Table:
    table = Table(title="where the pipeline's time goes (seconds)")
    table.add_column("step")
    for label in profiles:
        table.add_column(label, justify="right")
    steps = next(iter(profiles.values()))[0]
    for step in steps:
        table.add_row(step, *(f"{p[0].get(step, 0.0):.2f}" for p in profiles.values()))
    table.add_row(
        "Ray Data executions (s inside)",
        *(f"{len(e)} ({sum(e):.1f}s)" if e else "n/a" for _, e in profiles.values()),
    )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent-per-family", type=int, default=150)
    parser.add_argument("--workers", type=int, default=2, help="tokenizer tasks at once")
    parser.add_argument("--max-seq-len", type=int, default=2048)
    parser.add_argument("--packing", action="store_true", help="pack to max_seq_len as well")
    parser.add_argument("--model", default=TINY_MODEL)
    parser.add_argument("--cpus", type=int, default=None, help="CPUs of the local Ray cluster")
    parser.add_argument("--repeat", type=int, default=3, help="plain loop / warm runs, in turns")
    parser.add_argument("--nodes", type=int, default=1, help=">1: the scaling figure")
    parser.add_argument("--cpus-per-node", type=int, default=1, help="with --nodes")
    args = parser.parse_args()
    console = Console()
    if args.nodes > 1:
        scaling(args, console)
        return

    work = Path(tempfile.mkdtemp(prefix="agentray-process-bench-"))
    try:
        trajectories = work / "collect" / "trajectories"
        n = write_trajectories(trajectories, args.agent_per_family)
        cfg = ProcessConfig(
            model=args.model,
            max_seq_len=args.max_seq_len,
            tokenize_workers=args.workers,
            packing={"enabled": args.packing},
        )
        console.print(f"data: {n} expert trajectories, general: bundled ShareGPT; eta {cfg.eta}")

        t0 = time.perf_counter()
        ensure_ray(num_cpus=args.cpus)
        ray_start = time.perf_counter() - t0
        executions = _count_ray_data_executions()
        timings: dict[str, list[float]] = {
            "plain loop": [],
            "ray data cold": [],
            "ray data warm": [],
        }
        profiles = {}

        def pipeline(label: str) -> dict:
            steps: dict[str, float] = {}
            executions.clear()
            t0 = time.perf_counter()
            stats = run_process(cfg, work, progress=False, step_seconds=steps)
            timings[label].append(time.perf_counter() - t0)
            profiles[label] = (steps, list(executions))
            return stats

        stats = pipeline("ray data cold")
        # plain loop and warm pipeline taken in turns: a load change on a shared machine
        # hits both sides alike
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            plain = plain_loop(cfg, trajectories)
            timings["plain loop"].append(time.perf_counter() - t0)
            stats = pipeline("ray data warm")
        console.print(_timing_table(timings, plain["records_read"], stats["records"]))
        console.print(
            f"plain loop made {plain['rows_out']} rows, the pipeline {stats['records']} examples "
            f"({stats['agent_records']} agent : {stats['general_records']} general); "
            f"tokenizer tasks at once: {args.workers}; Ray start-up (not counted): "
            f"{ray_start:.1f}s; median of {args.repeat} runs each (cold: one)"
        )
        console.print(_profile_table(profiles))
        console.print(
            f"Ray Data fixed cost: the tokenizer pass over 8 one-exchange records on the warm "
            f"workers takes {_fixed_cost(cfg):.2f}s (median of 5)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def scaling(args: argparse.Namespace, console: Console) -> None:
    """Warm pipeline seconds on one node, then on ``args.nodes`` nodes of the same size."""
    import ray

    from agentray.testing.cluster import LocalCluster

    work = Path(tempfile.mkdtemp(prefix="agentray-process-scaling-"))
    trajectories = work / "collect" / "trajectories"
    n = write_trajectories(trajectories, args.agent_per_family)
    cfg = ProcessConfig(
        model=args.model,
        max_seq_len=args.max_seq_len,
        tokenize_workers=args.nodes * args.cpus_per_node,  # a task per CPU of the big cluster
        packing={"enabled": args.packing},
    )
    timings: dict[str, list[float]] = {}
    with LocalCluster() as cluster:
        ensure_ray(address=cluster.start_head(args.cpus_per_node))

        def runs(label: str) -> None:
            run_process(cfg, work, progress=False)  # cold: new workers load the tokenizer
            timings[label] = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                stats = run_process(cfg, work, progress=False)
                timings[label].append(time.perf_counter() - t0)
            console.print(f"{label}: {stats['records']} examples, runs {timings[label]}")

        runs(f"1 node x {args.cpus_per_node} CPU")
        for _ in range(args.nodes - 1):
            cluster.add_node(args.cpus_per_node)
        cluster.wait_for_nodes(args.nodes)
        runs(f"{args.nodes} nodes x {args.cpus_per_node} CPU")
        ray.shutdown()
    shutil.rmtree(work, ignore_errors=True)
    one, many = (statistics.median(r) for r in timings.values())
    table = Table(title=f"process stage, {n} trajectories + ShareGPT, warm (median)")
    for column in ("cluster", "seconds", "all runs", "vs 1 node"):
        table.add_column(column, justify="left" if column == "cluster" else "right")
    for label, seconds in zip(timings, (one, many), strict=True):
        all_runs = " ".join(f"{r:.1f}" for r in timings[label])
        table.add_row(label, f"{seconds:.1f}", all_runs, f"{one / seconds:.2f}x")
    console.print(table)
    console.print(f"tokenizer tasks at once: {cfg.tokenize_workers}; load: {_load()}")


def _load() -> str:
    import os

    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
