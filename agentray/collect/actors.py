"""A set of actor slots of one kind: least-loaded routing, and replacement of the
actors that die (the rollout engine's EnvPools and PolicyActors)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from agentray.collect.metrics import RolloutMetrics


class NoLiveActors(RuntimeError):
    pass


@dataclass(eq=False)
class Slot:
    index: int
    actor: Any
    in_flight: int = 0
    alive: bool = True


class ActorSet:
    """``n`` actor slots of one kind: least-loaded routing and replacement of dead actors."""

    def __init__(
        self,
        kind: str,
        start: Callable[[], Any],
        n: int,
        max_replacements: int,
        metrics: RolloutMetrics,
    ) -> None:
        self.kind = kind
        self._start = start
        self.slots = [Slot(i, start()) for i in range(n)]
        self.max_replacements = max_replacements
        self.replacements = 0
        self._metrics = metrics

    def acquire(self) -> Slot:
        live = [s for s in self.slots if s.alive]
        if not live:
            raise NoLiveActors(f"every {self.kind} actor died ({self.replacements} replaced)")
        slot = min(live, key=lambda s: s.in_flight)
        slot.in_flight += 1
        return slot

    def release(self, slot: Slot) -> None:
        slot.in_flight -= 1

    def lost(self, slot: Slot, actor: Any) -> None:
        """``actor`` (started in ``slot``) failed a call: replace it, once."""
        if slot.actor is not actor or not slot.alive:
            return  # another episode already saw it die
        _kill(actor)
        if self.replacements >= self.max_replacements:
            slot.alive = False
            return
        self.replacements += 1
        slot.actor = self._start()
        self._metrics.replacement(self.kind)

    def live_actors(self) -> list[Any]:
        return [s.actor for s in self.slots if s.alive]

    def shutdown(self) -> None:
        for slot in self.slots:
            _kill(slot.actor)


def _kill(actor: Any) -> None:
    with contextlib.suppress(Exception):  # already gone
        ray.kill(actor, no_restart=True)
