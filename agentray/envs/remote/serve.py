"""``agentray env serve``: any registered family over HTTP, for other trainers (and for
agentray's own remote families).

The family's tasks are its train split then its test split, numbered from 0 (the index a
client resets to). Besides each protocol's own routes, every server lists its tasks at
``GET /agentray/tasks`` (AgentBench: ``/api/agentray/tasks``): index, id, split and the
scripted expert's replies.

Protocols: ``agentgym`` (AgentGym's env-server API, webshop's field names),
``agentbench`` (AgentBench v0.2's task-worker API under ``/api``) and ``openenv`` (an
OpenEnv server built with openenv-core's own classes: ``agentray.envs.remote.openenv_api``;
needs ``pip install 'agentray[openenv]'``).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agentray.envs.base import Env
from agentray.envs.registry import env_class, make_env
from agentray.http_serving import ThreadedServer, announced_url, bound_socket
from agentray.types import Message, Status, StepResult, TaskSpec

READY_LINE = "agentray env server listening on "
PROTOCOLS = ("agentgym", "agentbench", "openenv")

# AgentBench v0.2's SampleStatus values (src/typings/status.py)
AGENTBENCH_STATUS = {
    Status.RUNNING: "running",
    Status.COMPLETED: "completed",
    Status.AGENT_CONTEXT_LIMIT: "agent context limit",
    Status.AGENT_INVALID_ACTION: "agent invalid action",
    Status.TASK_LIMIT_REACHED: "task limit reached",
    Status.TASK_ERROR: "task error",
}


class FamilyHost:
    """One family's tasks and its running episodes (env instances by session id)."""

    def __init__(self, family: str, config: dict[str, Any] | None = None) -> None:
        self.family = family
        self.config = env_class(family).config_cls(**(config or {}))
        env = make_env(family, self.config)
        self.tasks: list[TaskSpec] = env.tasks("train") + env.tasks("test")
        self._expert = env
        self._listing: list[dict[str, Any]] | None = None
        self.sessions: dict[Any, Env] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # by route path

    def listing(self) -> list[dict[str, Any]]:
        if self._listing is None:
            self._listing = [
                {
                    "index": i,
                    "id": task.id,
                    "split": task.split,
                    "expert_actions": self._expert.expert_actions(task),
                }
                for i, task in enumerate(self.tasks)
            ]
        return self._listing

    def task(self, index: Any) -> TaskSpec:
        if not isinstance(index, int) or not 0 <= index < len(self.tasks):
            raise KeyError(f"no task {index!r}: indices are 0..{len(self.tasks) - 1}")
        return self.tasks[index]

    def create(self, session_id: Any = None) -> Any:
        with self._lock:
            if session_id is None:
                session_id = next(self._ids)
            if session_id in self.sessions:
                raise KeyError(f"session {session_id} exists already")
            self.sessions[session_id] = make_env(self.family, self.config)
        return session_id

    def env(self, session_id: Any) -> Env:
        env = self.sessions.get(session_id)
        if env is None:
            raise KeyError(f"no session {session_id!r}")
        return env

    def reset(self, session_id: Any, index: Any) -> list[Message]:
        return self.env(session_id).reset(self.task(index))

    def step(self, session_id: Any, action: str) -> StepResult:
        return self.env(session_id).step(action)

    def close(self, session_id: Any) -> bool:
        with self._lock:
            env = self.sessions.pop(session_id, None)
        if env is not None:
            env.close()
        return env is not None


def _handler(fn: Callable[[dict[str, Any], Request], Any]) -> Callable[[Request], Any]:
    """A route: the JSON body (or the query) to ``fn`` on a thread; a KeyError is a 400."""

    async def endpoint(request: Request) -> JSONResponse:
        host: FamilyHost = request.app.state.host
        host.requests[request.url.path] += 1
        body: dict[str, Any] = dict(request.query_params)
        if request.method == "POST":
            raw = await request.body()
            if raw:
                body = await request.json()
        try:
            return JSONResponse(await run_in_threadpool(fn, body, request))
        except KeyError as e:
            return JSONResponse({"detail": str(e.args[0] if e.args else e)}, status_code=400)
        except HTTPError as e:
            return JSONResponse({"detail": e.detail}, status_code=e.status)

    return endpoint


class HTTPError(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(str(detail))
        self.status, self.detail = status, detail


# -- AgentGym ---------------------------------------------------------------------------------


def agentgym_app(host: FamilyHost) -> Starlette:
    """AgentGym's env-server routes (agentenv-webshop's names: ``env_idx``, ``session_id``).
    /reset answers ``{"observation", "agentray_messages"}`` (the family's opening turns);
    /step's ``info`` carries the episode's status."""
    last: dict[Any, str] = {}

    def create(body: dict, _: Request) -> int:
        return host.create()

    def reset(body: dict, _: Request) -> dict[str, Any]:
        env_idx = _int(body, "env_idx")
        messages = host.reset(env_idx, _int(body, "session_id"))
        last[env_idx] = messages[-1]["content"]
        return {"observation": last[env_idx], "agentray_messages": messages}

    def step(body: dict, _: Request) -> dict[str, Any]:
        env_idx = _int(body, "env_idx")
        result = host.step(env_idx, str(body.get("action", "")))
        if result.observation is not None:
            last[env_idx] = result.observation
        return {
            "observation": result.observation,
            "state": result.observation,
            "reward": result.reward,
            "done": result.done,
            "info": {**result.info, "status": result.status.value},
        }

    def observation(body: dict, _: Request) -> str:
        env_idx = _int(body, "env_idx")
        host.env(env_idx)
        return last.get(env_idx, "")

    def close(body: dict, _: Request) -> dict[str, bool]:
        env_idx = _int(body, "env_idx")
        last.pop(env_idx, None)
        return {"closed": host.close(env_idx)}

    routes = [
        Route("/", _handler(lambda b, r: "ok"), methods=["GET"]),
        Route("/list_envs", _handler(lambda b, r: list(host.sessions)), methods=["GET"]),
        Route("/create", _handler(create), methods=["POST"]),
        Route("/reset", _handler(reset), methods=["POST"]),
        Route("/step", _handler(step), methods=["POST"]),
        Route("/observation", _handler(observation), methods=["GET"]),
        Route("/close", _handler(close), methods=["POST"]),
        Route("/agentray/tasks", _handler(lambda b, r: host.listing()), methods=["GET"]),
    ]
    return Starlette(routes=routes)


def _int(body: dict[str, Any], key: str) -> int:
    try:
        return int(body[key])
    except (KeyError, TypeError, ValueError):
        raise KeyError(f"{key} (an int) is required") from None


# -- AgentBench v0.2 task worker ---------------------------------------------------------------


class _Sample:
    def __init__(self, index: int, history: list[dict[str, str]]) -> None:
        self.index, self.history = index, history


def agentbench_app(host: FamilyHost, concurrency: int = 100_000) -> Starlette:
    """AgentBench v0.2's task-worker routes under ``/api`` (src/server/task_worker.py), for
    a client that talks to the worker directly (no controller heartbeat)."""
    samples: dict[int, _Sample] = {}

    def start_sample(body: dict, _: Request) -> dict[str, Any]:
        session_id, index = _int(body, "session_id"), body.get("index")
        if session_id in samples:
            raise HTTPError(400, "Session ID already exists")
        if len(samples) >= concurrency:
            raise HTTPError(406, f"Sample concurrency limit reached: {concurrency}")
        host.task(index)
        host.create(session_id)
        try:
            messages = host.reset(session_id, index)
        except Exception:
            host.close(session_id)
            raise
        sample = samples[session_id] = _Sample(index, [_history_item(m) for m in messages])
        return {"session_id": session_id, "output": _output(sample, Status.RUNNING)}

    def interact(body: dict, _: Request) -> dict[str, Any]:
        session_id = _int(body, "session_id")
        sample = samples.get(session_id)
        if sample is None:
            raise HTTPError(400, "No such session")
        agent = body.get("agent_response") or {}
        if agent.get("status", "normal") != "normal":  # cancelled or context limit
            return _finish(session_id, sample, Status.AGENT_CONTEXT_LIMIT, 0.0, {})
        content = agent.get("content") or ""
        sample.history.append({"role": "agent", "content": content})
        result = host.step(session_id, content)
        if not result.done:
            sample.history.append({"role": "user", "content": result.observation or ""})
            return {"session_id": session_id, "output": _output(sample, Status.RUNNING)}
        out = _finish(session_id, sample, result.status, result.reward, result.info)
        if result.status == Status.TASK_ERROR:
            raise HTTPError(501, out)
        return out

    def _finish(
        session_id: int, sample: _Sample, status: Status, reward: float, info: dict
    ) -> dict[str, Any]:
        samples.pop(session_id, None)
        host.close(session_id)
        result = {"reward": reward, "status": status.value, "info": info}
        return {"session_id": session_id, "output": _output(sample, status, result)}

    def cancel(body: dict, _: Request) -> dict[str, Any]:
        session_id = _int(body, "session_id")
        if samples.pop(session_id, None) is None:
            raise HTTPError(400, "No such session")
        host.close(session_id)
        return {"session_id": session_id}

    def cancel_all(body: dict, _: Request) -> None:
        for session_id in list(samples):
            samples.pop(session_id, None)
            host.close(session_id)

    def calculate_overall(body: dict, _: Request) -> dict[str, Any]:
        return overall(body.get("results") or [])

    def sample_status(body: dict, _: Request) -> dict[str, Any]:
        session_id = _int(body, "session_id")
        if session_id not in samples:
            raise HTTPError(400, "No such session")
        return {"session_id": session_id, "index": samples[session_id].index, "status": {}}

    routes = [
        Route("/api/get_indices", _handler(lambda b, r: list(range(len(host.tasks))))),
        Route("/api/get_sessions", _handler(lambda b, r: {s: x.index for s, x in samples.items()})),
        Route(
            "/api/worker_status",
            _handler(lambda b, r: {"concurrency": concurrency, "current": len(samples)}),
        ),
        Route("/api/sample_status", _handler(sample_status), methods=["POST"]),
        Route("/api/start_sample", _handler(start_sample), methods=["POST"]),
        Route("/api/interact", _handler(interact), methods=["POST"]),
        Route("/api/cancel", _handler(cancel), methods=["POST"]),
        Route("/api/cancel_all", _handler(cancel_all), methods=["POST"]),
        Route("/api/calculate_overall", _handler(calculate_overall), methods=["POST"]),
        Route("/api/agentray/tasks", _handler(lambda b, r: host.listing())),
    ]
    return Starlette(routes=routes)


def _history_item(message: Message) -> dict[str, str]:
    role = "agent" if message["role"] == "assistant" else "user"
    return {"role": role, "content": message["content"]}


def _output(sample: _Sample, status: Status, result: Any = None) -> dict[str, Any]:
    """A TaskOutput (AgentBench's ``src/typings/output.py``)."""
    return {
        "index": sample.index,
        "status": AGENTBENCH_STATUS[status],
        "result": result,
        "history": sample.history,
    }


def overall(results: list[dict[str, Any]]) -> dict[str, Any]:
    """This worker's ``calculate_overall``: over TaskOutputs, the mean reward, the success
    rate (reward 1) and the count of each status."""
    rewards = [float(((r.get("result") or {}).get("reward")) or 0.0) for r in results]
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r.get("status", "unknown")] = statuses.get(r.get("status", "unknown"), 0) + 1
    n = max(len(results), 1)
    return {
        "total": len(results),
        "reward": sum(rewards) / n,
        "success_rate": sum(x >= 1.0 for x in rewards) / n,
        "statuses": statuses,
    }


# -- running a server --------------------------------------------------------------------------


def build_app(protocol: str, host: FamilyHost) -> Any:
    if protocol == "agentgym":
        app = agentgym_app(host)
    elif protocol == "agentbench":
        app = agentbench_app(host)
    elif protocol == "openenv":
        app = _openenv_app(host)
    else:
        raise ValueError(f"unknown protocol {protocol!r}; one of {', '.join(PROTOCOLS)}")
    app.state.host = host
    return app


def _openenv_app(host: FamilyHost) -> Any:
    """openenv-core's server over the family, plus the task listing."""
    from agentray.envs.remote.openenv import openenv_api

    app = openenv_api().openenv_app(host)
    app.add_route("/agentray/tasks", _handler(lambda b, r: host.listing()), methods=["GET"])
    return app


class EnvServer:
    """A family served over ``protocol`` on a background thread of this process
    (``with EnvServer("db", "agentgym") as server: server.url``)."""

    def __init__(
        self,
        family: str,
        protocol: str = "agentgym",
        config: dict[str, Any] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.family_host = FamilyHost(family, config)
        app = build_app(protocol, self.family_host)
        self._server = ThreadedServer(app, host, port, "env server", **UVICORN_SETTINGS)
        self.host, self.port = host, self._server.port

    @property
    def url(self) -> str:
        return self._server.url

    def start(self, timeout_s: float = 30.0) -> EnvServer:
        self._server.start(timeout_s)
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> EnvServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


UVICORN_SETTINGS = {
    "lifespan": "auto",
    "timeout_graceful_shutdown": 2,
    "timeout_keep_alive": 75,
    "backlog": 4096,
}


def serve(
    family: str,
    protocol: str,
    port: int,
    host: str = "127.0.0.1",
    config: dict[str, Any] | None = None,
) -> None:
    """Serve ``family`` over ``protocol`` until interrupted; prints ``READY_LINE`` + URL."""
    import uvicorn

    family_host = FamilyHost(family, config)
    sock = bound_socket(host, port)
    app = build_app(protocol, family_host)
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, **UVICORN_SETTINGS)
    )
    url = f"http://{host}:{sock.getsockname()[1]}"
    threading.Thread(target=_announce, args=(server, url), daemon=True).start()
    server.run(sockets=[sock])


def _announce(server: Any, url: str) -> None:
    while not server.started:
        time.sleep(0.01)
    print(READY_LINE + url, flush=True)


class ServerProcess:
    """``agentray env serve`` in a child process (``python -m agentray.envs.remote``), so
    the server has its own interpreter and can be killed: tests and benchmarks."""

    def __init__(
        self,
        family: str,
        protocol: str = "agentgym",
        config: dict[str, Any] | None = None,
        port: int = 0,
    ) -> None:
        self.args = [family, "--protocol", protocol, "--port", str(port)]
        self.args += ["--family-config", json.dumps(config or {})]
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, timeout_s: float = 120.0) -> ServerProcess:
        cmd = [sys.executable, "-m", "agentray.envs.remote", "serve", *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self.url = announced_url(self.proc, READY_LINE, timeout_s) or ""
        if not self.url:
            self.stop()
            raise RuntimeError(f"env server {' '.join(cmd)} did not start in {timeout_s}s")
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
