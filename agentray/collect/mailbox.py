"""Mailboxes between actors: a callee keeps one ``Outbox`` per caller, and the caller
fetches what is ready with one call at a time, many items per call (``PoolLink``: the
rollout engine's side, for the episodes it runs on one EnvPool)."""

from __future__ import annotations

import asyncio
from typing import Any

from agentray.records import EpisodeResult


class Outbox:
    """Items (an id and a result) waiting for one caller's next fetch."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, Any]] = []
        self.ready = asyncio.Event()

    def put(self, key: Any, item: Any) -> None:
        self.items.append((key, item))
        self.ready.set()

    async def take(self) -> list[tuple[Any, Any]]:
        """Everything waiting (waits for at least one item)."""
        await self.ready.wait()
        items, self.items = self.items, []
        self.ready.clear()
        return items


class PoolLink:
    """The engine's channel to one EnvPool: the episodes that start in one turn of the
    event loop go out in one ``start_episodes`` call, and one ``episode_results`` call at
    a time brings back whatever episodes have ended. A failed call (the pool died:
    RayActorError) fails every episode waiting on the link with its error."""

    def __init__(self, actor: Any, inbox: str) -> None:
        self.actor = actor
        self.inbox = inbox
        self._outgoing: list[tuple] = []
        self._futures: dict[str, asyncio.Future] = {}
        self._collecting = False
        self._tasks: set[asyncio.Task] = set()

    async def run(self, episode_id: str, *args: Any) -> EpisodeResult:
        """``EnvPool.run_episode(episode_id, *args)``'s result."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._futures[episode_id] = future
        future.add_done_callback(lambda _: self._futures.pop(episode_id, None))
        if not self._outgoing:
            loop.call_soon(self._flush)
        self._outgoing.append((episode_id, *args))
        return await future

    def _flush(self) -> None:
        batch, self._outgoing = self._outgoing, []
        if not self._collecting:
            self._collecting = True
            self._spawn(self._collect())
        self._spawn(self._send(batch))

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple]) -> None:
        try:
            await self.actor.start_episodes.remote(self.inbox, batch)
        except Exception as e:
            self._fail([args[0] for args in batch], e)

    async def _collect(self) -> None:
        try:
            while self._futures:
                for episode_id, result in await self.actor.episode_results.remote(self.inbox):
                    future = self._futures.get(episode_id)
                    if future is not None and not future.done():
                        future.set_result(result)
        except Exception as e:
            self._fail(list(self._futures), e)
        finally:
            self._collecting = False

    def _fail(self, episode_ids: list[str], error: BaseException) -> None:
        for episode_id in episode_ids:
            future = self._futures.get(episode_id)
            if future is not None and not future.done():
                future.set_exception(error)
