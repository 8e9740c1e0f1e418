"""Remote env families against real servers over real HTTP (OpenEnv: real WebSockets):
our db family served with ``agentray env serve`` (a child process, or a thread where the
test needs none), played back through the remote backend; the same statuses, rewards and
conversations as the local family; a server killed with SIGKILL mid-run loses and doubles
no episode. The OpenEnv cases need openenv-core (CI installs it: missing there, the run
fails in conftest; elsewhere they skip)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter

import pytest

from agentray.collect.config import RolloutConfig
from agentray.collect.engine import RolloutEngine, load_tasks
from agentray.collect.sink import ParquetSink, read_trajectories
from agentray.envs.episode import run_episode, scripted
from agentray.envs.registry import make_env
from agentray.envs.remote.openenv import openenv_missing
from agentray.envs.remote.serve import EnvServer, ServerProcess
from agentray.policies.registry import ExpertConfig
from agentray.types import Status

DB = {"n_train": 24, "n_test": 4, "seed": 3}
WRONG = 'I guess.\nAction: Answer\nFinal Answer: ["surely not this"]'
needs_openenv = pytest.mark.skipif(bool(openenv_missing()), reason=openenv_missing() or "")
PROTOCOLS = ["agentgym", "agentbench", pytest.param("openenv", marks=needs_openenv)]


def _url(protocol: str, root: str) -> str:
    """A served family's base URL for the remote family (AgentBench's routes are in /api)."""
    return f"{root}/api" if protocol == "agentbench" else root


def _remote_config(protocol: str, roots: list[str], **extra) -> dict:
    urls = [_url(protocol, root) for root in roots]
    return {protocol: {"urls": urls, "max_rounds": 15, **extra}}


def _collect(family: str, envs: dict, out, rollout: dict | None = None, chaos=None) -> tuple:
    """Collect the train split of ``family`` with the expert; (summary, records by id)."""
    cfg = RolloutConfig(
        **{"max_in_flight": 8, "num_env_pools": 2, "envs_per_pool": 8, "flush_every": 4,
           "max_episode_retries": 3, **(rollout or {})}
    )  # fmt: skip
    tasks = load_tasks([family], "train", envs)
    engine = RolloutEngine(cfg, ExpertConfig(), envs)
    sink = ParquetSink(out, flush_every=4, max_attempts=cfg.max_attempts)

    async def main() -> dict:
        jobs = [engine.run(tasks, sink, progress=False)] + ([chaos(sink)] if chaos else [])
        return (await asyncio.gather(*jobs))[0]

    try:
        summary = asyncio.run(asyncio.wait_for(main(), timeout=300))
    finally:
        engine.shutdown()
    return summary, {r.id: r for r in read_trajectories(out)}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_remote_episodes_end_like_local_ones(protocol):
    """Every way an episode ends (solved, wrong answer, no action, round limit) gives the
    same status, reward and conversation through the server as in the local family."""
    local = make_env("db", {**DB, "max_rounds": 3})
    local_tasks = local.tasks("train") + local.tasks("test")
    with EnvServer("db", protocol, {**DB, "max_rounds": 3}) as server:
        remote = make_env(protocol, {"urls": [_url(protocol, server.url)]})
        tasks = remote.tasks("train")
        assert [t.payload["id"] for t in tasks] == [t.id for t in local.tasks("train")]
        assert len(remote.tasks("test")) == DB["n_test"]
        sql = "I look.\nAction: Operation\n```sql\nSELECT 1;\n```"
        plays = {
            "expert": lambda t: local.expert_actions(t),
            "wrong": lambda t: [WRONG],
            "invalid": lambda t: ["no action here"],
            "limit": lambda t: [sql] * 5,
        }
        for name, plan in plays.items():
            for i in (0, 1, 2):
                mine = run_episode(remote, tasks[i], scripted(plan(local_tasks[i])), close=True)
                theirs = run_episode(
                    local, local_tasks[i], scripted(plan(local_tasks[i])), close=True
                )
                assert mine.result.status == theirs.result.status, (name, i)
                assert mine.result.reward == theirs.result.reward, (name, i)
                assert [m["content"] for m in mine.messages] == [
                    m["content"] for m in theirs.messages
                ]
                assert [m.get("loss") for m in mine.messages] == [
                    m.get("loss") for m in theirs.messages
                ]
        statuses = {
            run_episode(remote, tasks[0], scripted(plan(local_tasks[0])), close=True).result.status
            for plan in plays.values()
        }
        assert statuses == {
            Status.COMPLETED,
            Status.AGENT_INVALID_ACTION,
            Status.TASK_LIMIT_REACHED,
        }
        assert not server.family_host.sessions  # every session was closed


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_collect_through_a_served_family_matches_local(ray_local, tmp_path, protocol, row_ids):
    with ServerProcess("db", protocol, DB) as server:
        envs = _remote_config(protocol, [server.url])
        summary, records = _collect(protocol, envs, tmp_path / "remote")
    _, local = _collect("db", {"db": DB}, tmp_path / "local")
    assert len(records) == DB["n_train"] == len(local)
    by_source = {r.id: r for r in local.values()}
    listing = make_env("db", DB).tasks("train")
    for i, task in enumerate(listing):
        mine, theirs = records[f"{protocol}_{i}"], by_source[task.id]
        assert (
            (mine.status, mine.reward) == (theirs.status, theirs.reward) == (Status.COMPLETED, 1.0)
        )
        assert mine.conversations == theirs.conversations
    assert summary["families"][protocol]["success_rate"] == 1.0
    assert set(row_ids(str(tmp_path / "remote")).values()) == {1}


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sigkilled_server_its_episodes_rerun_on_the_other_none_lost_none_doubled(
    ray_local, tmp_path, protocol, row_ids
):
    config = {**DB, "n_train": 60}
    with ServerProcess("db", protocol, config) as a, ServerProcess("db", protocol, config) as b:
        envs = _remote_config(protocol, [a.url, b.url], request_timeout_s=20, server_down_s=60)

        async def chaos(sink: ParquetSink) -> None:
            while len(sink.written) < 12:
                await asyncio.sleep(0.005)
            os.kill(a.pid, signal.SIGKILL)

        summary, records = _collect(protocol, envs, tmp_path / "out", chaos=chaos)
        assert a.proc.wait(10) == -signal.SIGKILL
    assert summary["retries"].get("env_server", 0) >= 1  # episodes were on the dead one
    assert len(records) == 60
    assert Counter(r.status for r in records.values()) == {Status.COMPLETED: 60}
    assert set(row_ids(str(tmp_path / "out")).values()) == {1}  # none doubled


@pytest.mark.slow
def test_the_only_server_killed_task_errors_then_a_rerun_after_restart_finishes_once(
    ray_local, tmp_path, row_ids
):
    """With one server and no other to go to, its episodes end as task_error once their
    retries run out; after a restart on the same port, a rerun over the same folder plays
    exactly those again and every id ends completed, one record each that stands."""
    with ServerProcess("db", "agentgym", DB) as server:
        port = server.url.rsplit(":", 1)[1]
        envs = _remote_config("agentgym", [server.url], server_down_s=0)

        async def chaos(sink: ParquetSink) -> None:
            while len(sink.written) < 6:
                await asyncio.sleep(0.005)
            os.kill(server.pid, signal.SIGKILL)

        rollout = {"max_episode_retries": 1}
        first, records = _collect("agentgym", envs, tmp_path / "out", rollout, chaos)
    errors = [r for r in records.values() if r.status == Status.TASK_ERROR]
    assert errors and all("env server lost" in r.error for r in errors), {r.error for r in errors}
    assert len(records) == DB["n_train"]
    with ServerProcess("db", "agentgym", DB, port=int(port)):
        second, records = _collect("agentgym", envs, tmp_path / "out", rollout)
    assert second["episodes"] == len(errors)  # only the task_errors ran again
    assert Counter(r.status for r in records.values()) == {Status.COMPLETED: DB["n_train"]}
    rows = row_ids(str(tmp_path / "out"))
    assert sorted(rows) == sorted(records) and max(rows.values()) <= 2


def test_agentbench_rewards_and_scores_come_from_its_calculate_overall():
    """With ``overall_metric`` each sample's reward is calculate_overall over it (one call
    per sample); the run's score is calculate_overall over all its TaskOutputs."""
    local = make_env("db", DB)
    local_tasks = local.tasks("train")[:6]
    with EnvServer("db", "agentbench", DB) as server:
        config = {"urls": [f"{server.url}/api"], "overall_metric": "success_rate"}
        remote = make_env("agentbench", config)
        outputs, rewards = [], []
        for i, task in enumerate(remote.tasks("train")[:6]):
            plan = local.expert_actions(local_tasks[i]) if i % 2 == 0 else [WRONG]
            episode = run_episode(remote, task, scripted(plan), close=True)
            assert episode.result.done and episode.result.status == Status.COMPLETED
            outputs.append(episode.result.info["output"])
            rewards.append(episode.result.reward)
        assert rewards == [1.0, 0.0] * 3
        assert server.family_host.requests["/api/calculate_overall"] == 6
        scores = remote.overall(outputs)
        assert scores["success_rate"] == 0.5 and scores["total"] == 6
        assert scores["statuses"] == {"completed": 6}
        assert server.family_host.requests["/api/calculate_overall"] == 7


@needs_openenv
def test_an_openenv_trainers_own_client_plays_a_served_family():
    """A trainer that has only openenv-core (its GenericEnvClient over /ws, its HTTP routes)
    plays our db family: reset(index=i) opens task i, the expert's replies solve it, state
    names the task; the session's env is closed when the socket is."""
    from openenv.core.generic_client import GenericEnvClient

    local = make_env("db", DB)
    task = local.tasks("train")[2]
    with EnvServer("db", "openenv", DB) as server:
        import requests

        assert requests.get(f"{server.url}/health", timeout=10).json()["status"] == "healthy"
        schema = requests.get(f"{server.url}/schema", timeout=10).json()
        assert "message" in schema["action"]["properties"]
        with GenericEnvClient(base_url=server.url).sync() as client:
            first = client.reset(index=2)
            assert first.observation["task_id"] == task.id and not first.done
            assert first.observation["messages"] == local.reset(task)
            for reply in local.expert_actions(task):
                result = client.step({"message": reply})
            assert (result.done, result.reward) == (True, 1.0)
            assert result.observation["status"] == Status.COMPLETED.value
            state = client.state()
            assert (state["task_id"], state["status"]) == (task.id, "completed")
            assert state["step_count"] == len(local.expert_actions(task))
        deadline = time.monotonic() + 10  # the server closes the session as the socket goes
        while server.family_host.sessions and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not server.family_host.sessions


HIDE_OPENENV = """
import sys
from importlib.machinery import PathFinder
class Hide(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] == "openenv":
            return None
        return super().find_spec(name, path, target)
sys.meta_path = [Hide if f is PathFinder else f for f in sys.meta_path]
from agentray.envs.registry import env_class, make_env
from agentray.envs.remote.serve import EnvServer
print(env_class("openenv").unavailable())
try:
    EnvServer("db", "openenv", {"n_train": 2, "n_test": 1})
except ImportError as e:
    print(e)
"""


def test_without_openenv_core_the_family_and_the_server_say_what_to_install():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", HIDE_OPENENV], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    unavailable, serve = out.stdout.strip().splitlines()
    assert unavailable.startswith("openenv-core is not installed")
    assert "pip install 'agentray[openenv]'" in unavailable
    assert "No module named 'openenv'" in serve and "pip install 'agentray[openenv]'" in serve
