"""From the model deployment's events to HTTP, in the ingress: overload rejections as
OpenAI-style errors, several streams merged into one, and the server-sent events of a
streamed response (every choice's text, logprobs, finish reason, usage)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

from agentray.serve.decode import StepEvent
from agentray.serve.logprobs import ChoiceLogprobs, TokenStrings
from agentray.serve.protocol import APIError, ChunkWriter, error_body, overloaded
from agentray.types import Completion


class QuietBackpressure(logging.Filter):
    """Drops Ray Serve's warning per rejected request: under overload a log line per
    rejection adds load exactly when there is none to spare (``/stats`` counts them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Request dropped due to backpressure")


def reject_overload(error: BaseException) -> APIError | None:
    """The OpenAI-style error for Ray Serve's backpressure rejection, else None."""
    from ray.serve.exceptions import BackPressureError

    if not isinstance(error, BackPressureError):
        return None
    return overloaded(
        getattr(error, "_status_code", 503),
        f"server overloaded, retry later ({error.message})",
        getattr(error, "_retry_after_s", None),
    )


def merge_streams(streams: list[AsyncIterator[StepEvent]]) -> AsyncIterator[tuple[int, Any]]:
    """``(index, event)`` from several streams as they come; ``(index, None)`` when one
    ends; an exception in one is raised to the reader."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[StepEvent]) -> None:
        try:
            async for event in stream:
                await queue.put((index, event))
            await queue.put((index, None))
        except BaseException as e:  # noqa: BLE001 - handed to the reader
            await queue.put((index, e))

    async def read() -> AsyncIterator[tuple[int, Any]]:
        tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
        try:
            for _ in range(len(streams)):
                while True:
                    index, item = await queue.get()
                    if isinstance(item, BaseException):
                        raise item
                    yield index, item
                    if item is None:
                        break
        finally:
            for task in tasks:
                task.cancel()

    return read()


async def sse_body(
    writer: ChunkWriter,
    events: AsyncIterator[tuple[int, Any]],
    strings: TokenStrings,
    choices: int,
    n: int,
    with_usage: bool,
) -> AsyncIterator[str]:
    """The events of ``choices`` streams (``n`` per prompt) as server-sent events."""
    kind: Literal["chat", "text"] = writer.kind
    completions: list[Completion | None] = [None] * choices
    logprobs = [ChoiceLogprobs(kind, strings) for _ in range(choices)]
    if kind == "chat":
        for index in range(choices):
            yield writer.choice(index, None)
    try:
        async for index, event in events:
            if event is None:
                continue
            if event.delta or event.logprobs:
                yield writer.choice(
                    index, event.delta, None, logprobs[index].format(event.logprobs)
                )
            if event.completion is not None:
                completions[index] = event.completion
                yield writer.choice(index, None, event.completion.finish_reason)
    except Exception as e:  # the status line is sent: report it in the stream
        yield writer.event(error_body(f"{type(e).__name__}: {e}", "server_error"))
        return
    if with_usage:
        yield writer.usage([c for c in completions if c is not None], n)
    yield writer.DONE
