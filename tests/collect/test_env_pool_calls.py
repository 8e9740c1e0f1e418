"""EnvPool's own mechanics: where its env calls run (threads or its event loop), and
episodes started many per call whose results come back through a mailbox."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time

import ray

from agentray.collect.engine import load_tasks
from agentray.collect.env_pool import _PROBE_CALLS, EnvPool, env_pool_factory
from agentray.collect.policy_actor import policy_actor_factory
from agentray.policies.registry import ExpertConfig
from agentray.types import Status


def _cheap() -> int:
    return sum(range(100))


def _blocking() -> None:
    time.sleep(0.02)  # waits without CPU, as a subprocess or the network would


def test_cheap_calls_go_inline_while_the_gil_is_busy_and_blocking_ones_go_back():
    """Timed on threads while another thread keeps the GIL busy, a cheap call's wall time
    is mostly waiting for the GIL; its CPU time still shows it is cheap, so it moves to the
    event loop. A call that blocks without CPU moves too, and its first inline call (20 ms
    on the loop) sends it back to threads, where it stays: it is judged by wall time now."""
    pool = EnvPool(inline_below_ms=1.0)
    stop = threading.Event()

    def hog() -> None:
        while not stop.is_set():
            pass

    async def main() -> tuple[list[str], ...]:
        for _ in range(_PROBE_CALLS):
            await pool._call("cheap", _cheap)
            await pool._call("blocking", _blocking)
        after_probes = pool.inline_families()
        await pool._call("blocking", _blocking)
        after_one = pool.inline_families()
        for _ in range(_PROBE_CALLS):
            await pool._call("blocking", _blocking)
        return after_probes, after_one, pool.inline_families()

    thread = threading.Thread(target=hog, daemon=True)
    thread.start()
    try:
        placements = asyncio.run(main())
    finally:
        stop.set()
        thread.join()
    assert placements == (["blocking", "cheap"], ["cheap"], ["cheap"])


def test_episodes_start_many_per_call_and_come_back_through_the_mailbox(ray_local):
    """``start_episodes`` returns at once; ``episode_results`` brings back every episode
    (an episode naming a policy key the pool was never given ends as an error, it does not
    hang); the PolicyActor's handle went over once, with ``use_policy``."""
    family = {"db": {"n_train": 4, "n_test": 1}}
    tasks = load_tasks(["db"], "train", family)
    expert = ExpertConfig()
    pool = env_pool_factory(4, family, 0.25)()
    policy = policy_actor_factory(expert.model_dump(mode="json"), 8, 0.0, 0.25, 0.0)()
    try:
        ray.get(pool.use_policy.remote("teacher", policy), timeout=60)
        params = expert.params.model_dump(mode="json")
        episodes = [
            (f"e{i}", task.model_dump(mode="json"), "teacher", params, 60.0, True, True)
            for i, task in enumerate(tasks)
        ]
        episodes.append(("lost", tasks[0].model_dump(mode="json"), "nobody", params, 60.0))
        ray.get(pool.start_episodes.remote("engine-a", episodes), timeout=60)
        results: dict = {}
        while len(results) < len(episodes):
            results.update(ray.get(pool.episode_results.remote("engine-a"), timeout=60))
        load = ray.get(pool.load.remote())
    finally:
        ray.kill(pool)
        ray.kill(policy)
    assert sorted(results) == ["e0", "e1", "e2", "e3", "lost"]
    assert all(results[f"e{i}"].status == Status.COMPLETED for i in range(4))
    assert all(results[f"e{i}"].reward == 1.0 for i in range(4))
    assert results["lost"].status == Status.TASK_ERROR and "nobody" in results["lost"].error
    assert load["episodes"] == 4 and load["active"] == 0


def test_relax_gc_freezes_what_is_alive_and_spaces_young_collections():
    """In a fresh interpreter (it changes the process's collector): objects alive at the
    call are frozen, and young collections wait for YOUNG_GC_THRESHOLD allocations."""
    code = (
        "import gc\n"
        "from agentray.ray_utils import YOUNG_GC_THRESHOLD, relax_gc\n"
        "before = gc.get_freeze_count()\n"
        "relax_gc()\n"
        "print(before, gc.get_freeze_count(), gc.get_threshold()[0] == YOUNG_GC_THRESHOLD)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    before, frozen, spaced = out.stdout.split()
    assert int(before) == 0 and int(frozen) > 1000 and spaced == "True"
