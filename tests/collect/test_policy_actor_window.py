"""The PolicyActor's batching window: turns that keep arriving extend it (one batch, not a
batch and its stragglers), also across one quiet window mid-burst; a lone turn waits one
window, and a pause of two windows closes a burst."""

from __future__ import annotations

import asyncio

from agentray.collect.policy_actor import PolicyActor
from agentray.types import GenerationParams

PARAMS = GenerationParams(max_new_tokens=4).model_dump()
TURN = [{"role": "user", "content": "hi"}]


async def _trickle(actor: PolicyActor, turns: int, gap_s: float) -> None:
    sent = []
    for _ in range(turns):
        sent.append(asyncio.create_task(actor.generate(TURN, PARAMS)))
        await asyncio.sleep(gap_s)
    await asyncio.gather(*sent)


def test_turns_arriving_over_several_windows_join_one_batch():
    async def main() -> tuple[int, int]:
        actor = PolicyActor({"backend": "expert"}, max_batch_size=32, batch_wait_s=0.3)
        await _trickle(actor, 8, 0.06)  # 0.48 s of arrivals, each within 0.3 s of the last
        together = actor._batches
        await _trickle(actor, 2, 0.9)  # a pause longer than the window: two batches
        return together, actor._batches - together

    assert asyncio.run(main()) == (1, 2)


def test_a_burst_survives_one_quiet_window_and_a_lone_turn_waits_one():
    async def main() -> tuple[int, int, float]:
        actor = PolicyActor({"backend": "expert"}, max_batch_size=32, batch_wait_s=0.2)
        first = asyncio.create_task(_trickle(actor, 4, 0.05))
        await asyncio.sleep(0.2 + 0.28)  # the burst, then a pause of 1.4 windows
        await _trickle(actor, 4, 0.05)
        await first
        burst = actor._batches
        await asyncio.sleep(0.5)
        started = asyncio.get_running_loop().time()
        await actor.generate(TURN, PARAMS)  # alone: one window, not two
        return burst, actor._batches - burst, asyncio.get_running_loop().time() - started

    burst, lone, lone_s = asyncio.run(main())
    assert (burst, lone) == (1, 1)
    assert lone_s < 0.35
