"""agentray's episodes in openenv-core's own terms (this module needs openenv-core: ``pip
install 'agentray[openenv]'``).

The server side: ``FamilyEnvironment`` (an ``openenv.core.env_server.Environment``) plays
one of a ``FamilyHost``'s tasks per episode; ``openenv_app`` serves it with openenv-core's
``create_app`` (``HTTPEnvServer``): ``/ws`` sessions, ``/reset``, ``/step``, ``/state``,
``/schema``, ``/health``. The client side: ``TextEnvClient`` (an
``openenv.core.env_client.EnvClient``) for any OpenEnv server whose actions carry the
agent's reply as one text field, run on one event loop per process (``run``).

OpenEnv keeps an episode's state only in a WebSocket session (its HTTP ``/reset`` and
``/step`` build a fresh environment per request), so episodes go over ``/ws``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import random
import threading
from collections.abc import Coroutine
from typing import Any

from openenv.core.client_types import StepResult as OpenEnvStepResult
from openenv.core.env_client import EnvClient
from openenv.core.env_server import (
    Action,
    ConcurrencyConfig,
    Environment,
    Observation,
    State,
    create_app,
)
from openenv.core.env_server.types import EnvironmentMetadata
from pydantic import Field

from agentray.types import Status

MAX_SESSIONS = 100_000  # openenv-core's default is 1 session per server


class TextAction(Action):
    """One agent reply (OpenEnv's chat environments name it ``message`` too)."""

    message: str = Field(..., description="the agent's whole reply")


class FamilyObservation(Observation):
    """What an agentray family shows after reset or a step (``done`` and ``reward`` are
    Observation's own fields)."""

    text: str | None = Field(
        None, description="the latest user turn (None when the episode ended without one)"
    )
    messages: list[dict[str, Any]] = Field(
        default_factory=list,
        description="at reset: the family's opening turns (assistant turns are "
        "demonstrations, loss: false); empty after a step",
    )
    status: str = Field(Status.RUNNING.value, description="the episode's agentray status")
    task_id: str = Field("", description="the agentray task id being played")
    info: dict[str, Any] = Field(default_factory=dict, description="the step's extra info")


class FamilyState(State):
    """The session's episode: which task, how it stands."""

    family: str = Field("", description="the agentray family served")
    task_index: int | None = Field(None, description="the task's index on this server")
    task_id: str = Field("", description="the agentray task id")
    status: str = Field("", description="the episode's agentray status ('' before reset)")


class FamilyEnvironment(Environment[TextAction, FamilyObservation, FamilyState]):
    """One OpenEnv session: an env of the host's family (one per WebSocket).

    ``reset(index=i)`` plays task ``i`` of the host's listing (train split then test);
    without ``index`` a ``seed`` picks task ``seed % n``, and with neither a random one."""

    SUPPORTS_CONCURRENT_SESSIONS = True  # each session has its own family env

    def __init__(self, host: Any) -> None:  # host: agentray.envs.remote.serve.FamilyHost
        super().__init__()
        self.host = host
        self.session = host.create()
        self._state = FamilyState(family=host.family)

    def reset(
        self,
        seed: int | None = None,
        episode_id: str | None = None,
        index: int | None = None,
        **kwargs: Any,
    ) -> FamilyObservation:
        if index is None:
            index = seed % len(self.host.tasks) if seed is not None else None
            index = random.randrange(len(self.host.tasks)) if index is None else index
        messages = self.host.reset(self.session, index)
        task = self.host.task(index)
        self._state = FamilyState(
            episode_id=episode_id or task.id, family=self.host.family, task_index=index,
            task_id=task.id, status=Status.RUNNING.value,
        )  # fmt: skip
        return FamilyObservation(
            text=messages[-1]["content"], messages=[dict(m) for m in messages],
            task_id=task.id,
        )  # fmt: skip

    def step(
        self, action: TextAction, timeout_s: float | None = None, **kwargs: Any
    ) -> FamilyObservation:
        result = self.host.step(self.session, action.message)
        self._state.step_count += 1
        self._state.status = result.status.value
        return FamilyObservation(
            text=result.observation, done=result.done, reward=result.reward,
            status=result.status.value, task_id=self._state.task_id, info=result.info,
        )  # fmt: skip

    @property
    def state(self) -> FamilyState:
        return self._state

    def get_metadata(self) -> EnvironmentMetadata:
        return EnvironmentMetadata(
            name=f"agentray-{self.host.family}",
            description=f"agentray's {self.host.family} family ({len(self.host.tasks)} "
            "tasks; reset(index=i) plays task i of GET /agentray/tasks)",
        )

    def close(self) -> None:
        self.host.close(self.session)


def openenv_app(host: Any) -> Any:
    """The host's family as an OpenEnv server (openenv-core's FastAPI app)."""
    return create_app(
        functools.partial(FamilyEnvironment, host),
        TextAction,
        FamilyObservation,
        env_name=f"agentray-{host.family}",
        concurrency_config=ConcurrencyConfig(max_concurrent_envs=MAX_SESSIONS),
    )


# -- the client --------------------------------------------------------------------------------


class TextEnvClient(EnvClient[str, dict, State]):
    """An OpenEnv session whose action is the reply in one text field; observations stay
    the server's dicts."""

    def __init__(self, base_url: str, action_field: str, **kwargs: Any) -> None:
        super().__init__(base_url, **kwargs)
        self.action_field = action_field

    def _step_payload(self, action: str) -> dict[str, Any]:
        return {self.action_field: action}

    def _parse_result(self, payload: dict[str, Any]) -> OpenEnvStepResult[dict]:
        return OpenEnvStepResult(
            observation=payload.get("observation") or {},
            reward=payload.get("reward"),
            done=bool(payload.get("done")),
        )

    def _parse_state(self, payload: dict[str, Any]) -> State:
        return State(**payload)

    async def end_session(self, timeout_s: float) -> None:
        """Say ``close`` and let the server close the socket (``close()`` closes it from
        this side at once, and openenv-core's server then fails to send its own close)."""
        if self._ws is not None:
            with contextlib.suppress(Exception):  # best effort: close() below in any case
                await self._send({"type": "close"})
                await asyncio.wait_for(self._ws.wait_closed(), timeout_s)
        await self.close()


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def run(coro: Coroutine[Any, Any, Any], timeout: float) -> Any:
    """Run ``coro`` on this process's OpenEnv event loop (one thread for every session)
    and wait at most ``timeout`` seconds (then ``TimeoutError``)."""
    global _loop
    with _loop_lock:
        if _loop is None or not _loop.is_running():
            _loop = asyncio.new_event_loop()
            ready = threading.Event()
            _loop.call_soon(ready.set)
            threading.Thread(target=_loop.run_forever, name="openenv-loop", daemon=True).start()
            ready.wait(10)
    future = asyncio.run_coroutine_threadsafe(coro, _loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise
