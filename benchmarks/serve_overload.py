"""How fast ``agentray serve`` turns away requests under 10x overload.

    python benchmarks/serve_overload.py [--batch 8] [--factor 10] [--rounds 3]

The tiny default Llama on one CPU model replica behind the real app, holding ``--batch``
decoding (``max_batch_size = max_ongoing_requests``) plus ``--batch`` queued requests; each
round fires ``--factor`` x that many chat completions at once (48 tokens each) and prints
p50/p99 of the 503s and of the answers, measured three ways:

- ``openai``: end to end with the stock ``openai.AsyncOpenAI`` client, half of them streamed
  (what a user sees; includes the client's own time, all in one Python process);
- ``raw``: prebuilt HTTP/1.1 requests on raw sockets, all connected first and sent at
  once, timed from the send to the status line (almost no client cost);
- ``health``: as many ``GET /health`` at once: the floor of Ray Serve's HTTP path (proxy,
  ingress replica) on this machine, since a 503 can come no faster than that.

Goal (issue 14): p99 of the 503s <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlparse

from agentray.testing import free_port

KEY = "bench-key"
MAX_TOKENS = 48


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def line(name: str, outcomes: list[tuple[str, float]]) -> None:
    for kind in sorted({k for k, _ in outcomes}):
        ms = [1000 * s for k, s in outcomes if k == kind]
        print(
            f"  {name:7s} {kind:4s} x{len(ms):4d}  p50 {pct(ms, 0.5):6.0f} ms  p99 {pct(ms, 0.99):6.0f} ms"
        )


async def openai_storm(url: str, n: int) -> list[tuple[str, float]]:
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key=KEY, max_retries=0, timeout=120)

    async def one(i: int) -> tuple[str, float]:
        start = time.perf_counter()
        try:
            response = await client.chat.completions.create(
                model="agentray",
                messages=[{"role": "user", "content": f"load {i}"}],
                max_tokens=MAX_TOKENS,
                stream=i % 2 == 1,
            )
            if i % 2:
                async for _ in response:
                    pass
            kind = "200"
        except openai.APIStatusError as e:
            kind = str(e.status_code)
        return kind, time.perf_counter() - start

    try:
        return list(await asyncio.gather(*(one(i) for i in range(n))))
    finally:
        await client.close()


async def raw_storm(url: str, n: int, path: str, body: dict | None) -> list[tuple[str, float]]:
    where = urlparse(url)
    go = asyncio.Event()

    async def one(i: int) -> tuple[str, float]:
        data = (
            json.dumps({**body, "messages": [{"role": "user", "content": f"load {i}"}]}).encode()
            if body
            else b""
        )
        method = "POST" if body else "GET"
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {where.netloc}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        reader, writer = await asyncio.open_connection(where.hostname, where.port)
        await go.wait()
        start = time.perf_counter()
        writer.write(head + data)
        await writer.drain()
        status = (await reader.readline()).split()[1].decode()
        elapsed = time.perf_counter() - start
        await reader.read()
        writer.close()
        return status, elapsed

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    await asyncio.sleep(0.5)  # every connection open before the first byte is sent
    go.set()
    return list(await asyncio.gather(*tasks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from agentray.ray_utils import ensure_ray
    from agentray.serve import ServeConfig, start_server, stop_server
    from agentray.types import GenerationParams

    ensure_ray()
    cfg = ServeConfig(
        app_name="bench-overload",
        port=free_port(),
        num_cpus=0.5,
        max_batch_size=args.batch,
        batch_wait_timeout_s=0.1,
        max_ongoing_requests=args.batch,
        max_queued_requests=args.batch,
        api_key=KEY,
        params=GenerationParams(max_new_tokens=MAX_TOKENS),
    )
    url = start_server(cfg)
    n = args.factor * 2 * args.batch
    chat = {"model": "agentray", "max_tokens": MAX_TOKENS}
    try:
        for r in range(args.rounds):
            print(f"round {r}: {n} requests at once, capacity {2 * args.batch}")
            line("health", asyncio.run(raw_storm(url, n, "/health", None)))
            line(
                "raw",
                asyncio.run(raw_storm(url, n, urlparse(url).path + "/chat/completions", chat)),
            )
            time.sleep(2)  # let the admitted ones finish
            line("openai", asyncio.run(openai_storm(url, n)))
            time.sleep(2)
    finally:
        stop_server(cfg.app_name)


if __name__ == "__main__":
    main()
