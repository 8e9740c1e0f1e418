"""AgentGym's env-server API (``agentenv-*`` servers, e.g. agentenv-webshop):

``POST /create`` -> an env id (an int, or ``{"id": n}``); ``POST /reset`` with the id and
the task index (webshop: ``{"env_idx", "session_id"}``; babyai/alfworld style:
``{"id", "data_idx"}`` — ``id_field`` / ``index_field``) -> the first observation (a
string, a ``[state, info]`` pair or ``{"observation": ...}``); ``POST /step`` with the id
and ``action`` -> ``{"observation" | "state", "reward", "done", "info"}``; ``POST /close``.

AgentGym's servers send observations only: the instruction the agent reads first is the
client's (``opening``, AgentGym's ``conversation_start``). A server from ``agentray env
serve`` sends its family's own opening turns and each final step's status as well.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from agentray.envs.remote.base import RemoteConfig, RemoteEnv, mark_demonstrations
from agentray.types import Message, Status, StepResult


class AgentGymConfig(RemoteConfig):
    """An AgentGym env server (or several of one kind)."""

    id_field: str = Field(
        "env_idx", description="the env id's name in requests (webshop: env_idx; babyai: id)"
    )
    index_field: str = Field(
        "session_id",
        description="the task index's name in /reset (webshop: session_id; babyai: data_idx)",
    )
    opening: list[dict[str, Any]] = Field(
        default_factory=list,
        description="turns put before the first observation (AgentGym's conversation_start: "
        "the instruction, the 'Ok.' reply); assistant turns are demonstrations",
    )


class AgentGymEnv(RemoteEnv):
    name = "agentgym"
    protocol = "AgentGym"
    config_cls = AgentGymConfig
    config: AgentGymConfig

    _env_id: Any = None

    def open(self, index: int | str) -> list[Message]:
        created = self._post("/create", {}).json()
        self._env_id = created["id"] if isinstance(created, dict) else created
        body = {self.config.id_field: self._env_id, self.config.index_field: index}
        first = self._post("/reset", body).json()
        if isinstance(first, dict) and "agentray_messages" in first:
            return first["agentray_messages"]
        opening = mark_demonstrations([dict(m) for m in self.config.opening])  # type: ignore[misc]
        return [*opening, {"role": "user", "content": _observation(first)}]

    def send(self, reply: str) -> StepResult:
        body = {self.config.id_field: self._env_id, "action": reply}
        out = self._post("/step", body).json()
        done = bool(out.get("done"))
        info = out.get("info") if isinstance(out.get("info"), dict) else {}
        status = Status(info.pop("status", Status.COMPLETED if done else Status.RUNNING))
        return StepResult(
            observation=None if done and _no_observation(out) else _observation(out),
            done=done,
            reward=float(out.get("reward") or 0.0),
            status=status,
            info=info,
        )

    def end(self) -> None:
        if self._env_id is not None:
            self._post("/close", {self.config.id_field: self._env_id}, ok=(404, 405, 422))
            self._env_id = None


def _no_observation(out: dict[str, Any]) -> bool:
    return all(out.get(key) is None for key in ("observation", "state", "obs"))


def _observation(out: Any) -> str:
    """The observation in an AgentGym answer, whichever of its shapes the server uses."""
    if isinstance(out, str):
        return out
    if isinstance(out, list | tuple) and out:
        return _observation(out[0])
    if isinstance(out, dict):
        for key in ("observation", "state", "obs"):
            if isinstance(out.get(key), str):
                return out[key]
    raise ValueError(f"no observation in the server's answer: {str(out)[:200]}")
