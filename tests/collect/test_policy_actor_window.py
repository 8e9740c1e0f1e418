"""The PolicyActor's batching window: turns that keep arriving extend it (one batch, not a
batch and its stragglers); a pause longer than the window closes it."""

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
