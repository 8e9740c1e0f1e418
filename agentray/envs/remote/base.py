"""Remote env families: the episode runs on a server, agentray drives it over HTTP.

A ``RemoteEnv`` is an ordinary ``Env`` to the engine (the same statuses, retries and
records): ``reset`` opens a session on one of ``config.urls`` (least-loaded in this
process), ``step`` sends the reply, ``close`` ends the session. One subclass per protocol
implements ``open``, ``send`` and ``end``.

Tasks are server indices: ``train_indices`` / ``test_indices`` when set, else the server's
own list where the protocol has one, else ``range(n_train)`` / ``n_train + range(n_test)``.
A server started with ``agentray env serve`` also lists each task's split and the scripted
expert's replies, so the expert policy plays remote tasks as it plays local ones.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from typing import Any, ClassVar

from pydantic import Field, field_validator

from agentray.envs.base import Env, EnvServerLost, FamilyConfig
from agentray.envs.remote.http import Balancer, balancer, call
from agentray.types import Message, StepResult, TaskSpec

LISTING_PATH = "/agentray/tasks"  # our servers' extension: index, id, split, expert replies


class RemoteConfig(FamilyConfig):
    """Where the servers are and which of their tasks to play."""

    urls: list[str] = Field(
        default_factory=list,
        description="base URLs of the env servers (e.g. http://10.0.0.5:36001); episodes "
        "are spread over them, least-loaded first",
    )
    train_indices: list[int | str] | None = Field(
        None,
        description="server task indices of the train split (None: the server's list where "
        "the protocol has one, else 0..n_train-1)",
    )
    test_indices: list[int | str] | None = Field(
        None,
        description="server task indices of the test split (None: the server's list where "
        "the protocol has one, else n_train..n_train+n_test-1)",
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="seconds to connect to a server")
    request_timeout_s: float = Field(
        120.0,
        gt=0,
        description="seconds a server may take to answer one request; past it the server "
        "counts as lost and the episode restarts (on another URL where there is one)",
    )
    server_down_s: float = Field(
        10.0, ge=0, description="seconds a server that did not answer is avoided"
    )

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        bad = [u for u in value if not u.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"urls must start with http:// or https://: {bad}")
        return [u.rstrip("/") for u in value]


class RemoteEnv(Env[RemoteConfig]):
    """The protocol-independent part of a remote family (subclasses pick the protocol)."""

    metric_label = "mean reward (x100), scored by the server"
    # env calls block on the network: they always run on the EnvPool's threads
    inline_calls: ClassVar[bool] = False
    protocol: ClassVar[str] = ""

    def __init__(self, config: RemoteConfig | None = None) -> None:
        super().__init__(config)
        self.url: str | None = None
        self._balancer: Balancer | None = None
        self._opening: list[Message] = []

    @classmethod
    def unavailable(cls) -> str | None:
        return (
            f"a remote family ({cls.protocol} protocol): its episodes need servers, "
            f"set in envs.{cls.name}.urls"
        )

    # ------------------------------------------------------------------ tasks

    def tasks(self, split: str) -> list[TaskSpec]:
        if split not in ("train", "test"):
            raise ValueError(f"unknown split {split!r}; expected train or test")
        explicit = self.config.train_indices if split == "train" else self.config.test_indices
        if explicit is not None:
            return [self._spec(i, split, {"index": index}) for i, index in enumerate(explicit)]
        listed = self.listing()
        if listed is not None:
            return [
                self._spec(i, split, item)
                for i, item in enumerate(listed)
                if item.get("split", split) == split
            ]
        n, first = (
            (self.config.n_train, 0)
            if split == "train"
            else (self.config.n_test, self.config.n_train)
        )
        return [self._spec(first + i, split, {"index": first + i}) for i in range(n)]

    def _spec(self, number: int, split: str, payload: dict[str, Any]) -> TaskSpec:
        index = payload["index"]
        suffix = index if isinstance(index, int) else number
        return TaskSpec(
            id=f"{self.name}_{suffix}", family=self.name, split=split, seed=self.config.seed,
            payload=payload,
        )  # fmt: skip

    def listing(self) -> list[dict[str, Any]] | None:
        """The server's tasks (dicts with at least ``index``), or None where it lists none.
        By default an ``agentray env serve`` server's listing."""
        response = self._get_first(LISTING_PATH, ok=(404, 405))
        return None if response.status_code >= 400 else response.json()

    def _get_first(self, path: str, ok: tuple[int, ...] = ()) -> Any:
        if not self.config.urls:
            raise ValueError(f"envs.{self.name}.urls is empty: name the servers to play on")
        return call("GET", self.config.urls[0] + path, timeout=self._timeout(), ok=ok)

    def expert_actions(self, task: TaskSpec) -> list[str]:
        actions = task.payload.get("expert_actions")
        if not actions:
            raise ValueError(
                f"task {task.id}: the {self.protocol} server lists no expert replies (only "
                "`agentray env serve` servers do); play it with another policy"
            )
        return list(actions)

    def prompt(self, task: TaskSpec) -> list[Message]:
        raise NotImplementedError(
            f"{self.name}: a remote family's opening turns come from its server at reset"
        )

    # ------------------------------------------------------------------ the episode

    def reset(self, task: TaskSpec) -> list[Message]:
        """Open a session for ``task`` on one of the servers: its opening turns."""
        self.start(task)
        self._task, self._rounds, self._done = task, 0, False
        return [dict(m) for m in self._opening]  # type: ignore[misc]

    def start(self, task: TaskSpec) -> None:
        self.close()
        if not self.config.urls:
            raise ValueError(f"envs.{self.name}.urls is empty: name the servers to play on")
        self._balancer = balancer(self.config.urls)
        self.url = self._balancer.acquire()
        try:
            self._opening = self.open(task.payload["index"])
        except BaseException:
            self._lost_server()
            raise

    def act(self, action: str) -> StepResult:
        try:
            return self.send(action)
        except EnvServerLost:
            self._lost_server()
            raise

    def stop(self) -> None:
        if self.url is None:
            return
        try:
            with contextlib.suppress(Exception):  # best effort: the server may be gone
                self.end()
        finally:
            self._balancer.release(self.url)
            self.url = None

    def _lost_server(self) -> None:
        if self.url is not None:
            self._balancer.down(self.url, self.config.server_down_s)

    def _timeout(self) -> tuple[float, float]:
        return (self.config.connect_timeout_s, self.config.request_timeout_s)

    def _post(self, path: str, body: Any, ok: tuple[int, ...] = ()) -> Any:
        return call("POST", self.url + path, json=body, timeout=self._timeout(), ok=ok)

    # ------------------------------------------------------------------ the protocol

    @abstractmethod
    def open(self, index: int | str) -> list[Message]:
        """Start an episode of task ``index`` on ``self.url``: the opening turns."""

    @abstractmethod
    def send(self, reply: str) -> StepResult:
        """Send one agent reply: the step's result."""

    @abstractmethod
    def end(self) -> None:
        """End the session on the server (best effort)."""


def mark_demonstrations(messages: list[Message]) -> list[Message]:
    """The opening turns with every assistant turn marked a demonstration (``loss: False``)
    — a protocol without the flag sends turns no agent wrote."""
    return [
        {**m, "loss": False} if m["role"] == "assistant" else m  # type: ignore[misc]
        for m in messages
    ]
