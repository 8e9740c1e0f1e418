"""Mailboxes between actors: a callee keeps one ``Outbox`` per caller, and the caller
fetches what is ready with one call at a time, many items per call."""

from __future__ import annotations

import asyncio
from typing import Any


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
