"""OpenEnv servers (``openenv-core``: environments in containers, used by RL trainers),
driven with openenv-core's own WebSocket client (``EnvClient``; ``pip install
'agentray[openenv]'``).

Each episode is one ``/ws`` session: ``reset`` with the task index (``index_field``) ->
the first observation; ``step`` with the reply in the action's ``action_field`` -> the
observation, ``reward``, ``done``; the session closes at the episode's end. The text the
agent reads is the observation's ``observation_field``; an ``agentray env serve --protocol
openenv`` server also sends its family's opening turns (``messages``) and each step's
``status``. A server that refuses, drops the socket or does not answer in time is lost
(``EnvServerLost``): the engine restarts the episode, on another URL where there is one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
from typing import Any

from pydantic import Field

from agentray.envs.base import EnvServerLost
from agentray.envs.remote.base import RemoteConfig, RemoteEnv, mark_demonstrations
from agentray.types import Message, Status, StepResult

INSTALL_HINT = "pip install 'agentray[openenv]'"
STATUSES = {s.value for s in Status}
# refused, reset or no answer in time (websockets' ConnectionClosed is caught by module)
LOST = (ConnectionError, OSError, asyncio.TimeoutError, concurrent.futures.TimeoutError)


class OpenEnvConfig(RemoteConfig):
    """OpenEnv servers of one environment (urls: their http:// base URLs)."""

    action_field: str = Field(
        "message", description="the action's field that carries the agent's reply"
    )
    observation_field: str = Field(
        "text",
        description="the observation's field the agent reads (agentray servers: text; "
        "OpenEnv's echo_env: echoed_message)",
    )
    index_field: str = Field(
        "index",
        description="the reset argument that names the task (agentray servers: index; "
        "servers that pick a task by seed: seed)",
    )
    opening: list[dict[str, Any]] = Field(
        default_factory=list,
        description="turns put before the first observation when the server sends no "
        "opening turns of its own; assistant turns are demonstrations",
    )


class OpenEnvEnv(RemoteEnv):
    name = "openenv"
    protocol = "OpenEnv"
    config_cls = OpenEnvConfig
    config: OpenEnvConfig

    _client: Any = None

    @classmethod
    def unavailable(cls) -> str | None:
        return openenv_missing() or super().unavailable()

    def open(self, index: int | str) -> list[Message]:
        client_cls = openenv_api().TextEnvClient
        self._client = client_cls(
            self.url, self.config.action_field,
            connect_timeout_s=self.config.connect_timeout_s,
            message_timeout_s=self.config.request_timeout_s,
        )  # fmt: skip
        first = self._call("reset", self._client.reset(**{self.config.index_field: index}))
        observation = first.observation
        if observation.get("messages"):  # an agentray server: its family's opening turns
            return observation["messages"]
        opening = mark_demonstrations([dict(m) for m in self.config.opening])  # type: ignore[misc]
        return [*opening, {"role": "user", "content": self._text(observation) or ""}]

    def send(self, reply: str) -> StepResult:
        result = self._call("step", self._client.step(reply))
        observation, done = result.observation, bool(result.done)
        status = observation.get("status")
        if status not in STATUSES:
            status = Status.COMPLETED if done else Status.RUNNING
        info = observation.get("info")
        text = self._text(observation)
        return StepResult(
            observation=None if done and text is None else (text or ""),
            done=done,
            reward=float(result.reward or 0.0),
            status=Status(status),
            info=info if isinstance(info, dict) else {},
        )

    def end(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            timeout = self.config.connect_timeout_s
            openenv_api().run(client.end_session(timeout), timeout=timeout + 5)

    def _text(self, observation: dict[str, Any]) -> str | None:
        text = observation.get(self.config.observation_field)
        return None if text is None else str(text)

    def _call(self, what: str, coro: Any) -> Any:
        """One message over the session; a server that does not answer is lost."""
        run = openenv_api().run
        where = f"OpenEnv {what} on {self.url}/ws"
        limit = self.config.connect_timeout_s + self.config.request_timeout_s + 5
        try:
            return run(coro, timeout=limit)
        except LOST as e:
            raise EnvServerLost(f"{where}: {type(e).__name__}: {e}") from None
        except RuntimeError as e:  # the server's error message (EnvClient's wording)
            if "CAPACITY_REACHED" in str(e).upper():
                raise EnvServerLost(f"{where}: {e}") from None
            raise RuntimeError(f"{where}: {e}") from None
        except Exception as e:
            if type(e).__module__.startswith("websockets"):  # closed mid-answer
                raise EnvServerLost(f"{where}: {type(e).__name__}: {e}") from None
            raise


def openenv_missing() -> str | None:
    """What of openenv-core is missing here (its server imports fastmcp), or None."""
    for module, package in (("openenv", "openenv-core"), ("fastmcp", "fastmcp")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (the OpenEnv protocol): {INSTALL_HINT}"
    return None


def openenv_api() -> Any:
    """``agentray.envs.remote.openenv_api`` (built on openenv-core), or an ImportError that
    says what to install."""
    try:
        from agentray.envs.remote import openenv_api
    except ModuleNotFoundError as e:
        raise ImportError(f"the OpenEnv protocol needs openenv-core ({e}): {INSTALL_HINT}") from e
    return openenv_api
