"""The Env contract: AgentBench's Task plus a gym-style step.

An env family owns its prompt (``reset`` returns the opening turns: instruction, 1-shot
demonstration with ``loss: False`` on its assistant turns, then the problem), its action
parser and its scorer. One instance runs one episode at a time; instances are cheap and
isolated so hundreds can run at once.

The base class owns the episode: ``reset`` and ``step`` count the rounds, end an episode at
``config.max_rounds`` (TASK_LIMIT_REACHED), on a reply that is no action
(AGENT_INVALID_ACTION) and answer a step outside a running episode with
``no_episode_result()``. A family implements the hooks: ``start(task)`` builds the episode's
state, ``parse(reply)`` turns a reply into an action (or raises ``InvalidAction``),
``act(action)`` applies it, and ``stop()`` releases what the episode holds; ``invalid`` and
``limit`` say how a family ends on a bad reply or at the round limit where AgentBench's
semantics differ from the default.

The scripted expert (the offline teacher) is part of the family: ``expert_actions(task)``
returns the full, deterministic action sequence that solves ``task``. The expert policy
gets each episode's task with its turns (tasks are built once, by the driver); only the
OpenAI-compatible test endpoint, which sees text alone, finds the task from the
conversation (``TaskIndex``).
"""

from __future__ import annotations

import typing
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from agentray.types import Message, Status, StepResult, TaskSpec


class FamilyConfig(BaseModel):
    """Per-family settings; families subclass this with their own fields."""

    model_config = ConfigDict(extra="forbid")

    n_train: int = 50
    n_test: int = 20
    seed: int = 0
    max_rounds: int = 15


ConfigT = TypeVar("ConfigT", bound=FamilyConfig)
ActionT = TypeVar("ActionT")


class InvalidAction(Exception):
    """Raised by ``Env.parse`` for a reply that is no action; the message is the reason."""


def action_or_invalid(parsed: ActionT | None, reason: str) -> ActionT:
    """``parsed`` (a family parser's result), or ``InvalidAction(reason)`` when it is None."""
    if parsed is None:
        raise InvalidAction(reason)
    return parsed


class Env(ABC, Generic[ConfigT]):
    """A family subclasses ``Env[ItsConfig]``: ``config_cls`` and the type of ``config``
    come from that parameter."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    config_cls: ClassVar[type[FamilyConfig]] = FamilyConfig
    config: ConfigT
    # What the family's score (mean reward x 100) measures, as reports label it.
    metric_label: ClassVar[str] = "mean reward (x100)"
    # The reward a trajectory needs to be kept for training; None: the process stage's
    # ``reward_threshold`` (1.0 by default). A user's ``reward_thresholds`` overrides both.
    keep_threshold: ClassVar[float | None] = None
    # The family's task name in the paper's reference table; None: ``name``.
    reference_name: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            if typing.get_origin(base) is Env:
                (config_cls,) = typing.get_args(base)
                if isinstance(config_cls, type) and issubclass(config_cls, FamilyConfig):
                    cls.config_cls = config_cls

    def __init__(self, config: ConfigT | None = None) -> None:
        self.config = config or self.config_cls()  # type: ignore[assignment]
        self._task: TaskSpec | None = None
        self._rounds = 0
        self._done = True

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this family cannot run on this host (a missing extra or tool), or None."""
        return None

    @abstractmethod
    def tasks(self, split: str) -> list[TaskSpec]:
        """All tasks of a split ("train" or "test"), with stable ids."""

    @abstractmethod
    def prompt(self, task: TaskSpec) -> list[Message]:
        """The opening turns for ``task`` (ending with a user turn); pure, no side effects."""

    @abstractmethod
    def expert_actions(self, task: TaskSpec) -> list[str]:
        """The scripted expert's replies that solve ``task``, in order."""

    @staticmethod
    def action_problem(reply: str) -> str | None:
        """Why ``reply`` (one agent turn) does not parse in this family's action format, or
        None when it does. The process stage drops trajectories with such turns."""
        return None

    @staticmethod
    def problem_of(messages: list[Message]) -> str:
        """The text that identifies the task in a conversation: the last opening user turn.

        Families whose problem text is elsewhere override this.
        """
        return first_user_after_demo(messages)

    # ------------------------------------------------------------------ the episode

    def reset(self, task: TaskSpec) -> list[Message]:
        """Start an episode (``start`` builds its state) and return ``self.prompt(task)``."""
        messages = self.prompt(task)
        self.start(task)
        self._task = task
        self._rounds = 0
        self._done = False
        return messages

    def step(self, reply: str) -> StepResult:
        """Apply the agent's full reply; a malformed one is a status, never an exception."""
        if self._done:
            return no_episode_result()
        self._rounds += 1
        try:
            action = self.parse(reply)
        except InvalidAction as e:
            return self.invalid(str(e))
        result = self.act(action)
        if result.done:
            self._done = True
            return result
        if self._rounds >= self.config.max_rounds:
            return self.limit(result)
        return result

    def close(self) -> None:
        """Release resources held by the current episode; a later ``step`` is a task error."""
        self.stop()
        self._done = True

    # ------------------------------------------------------------------ family hooks

    @abstractmethod
    def start(self, task: TaskSpec) -> None:
        """Build the state of an episode of ``task``."""

    def parse(self, reply: str) -> Any:
        """The action in ``reply``; raises ``InvalidAction`` when there is none."""
        return reply

    @abstractmethod
    def act(self, action: Any) -> StepResult:
        """Apply one action: a running result, or one from ``_finish`` that ends the episode."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        """Release resources held by the current episode."""

    def invalid(self, reason: str) -> StepResult:
        """The step of a reply that is no action: by default it ends the episode."""
        return self._finish(Status.AGENT_INVALID_ACTION, 0.0, None, {"error": reason})

    def limit(self, result: StepResult) -> StepResult:
        """The last step once ``max_rounds`` are played (``result``: the step as it ran)."""
        return self._finish(Status.TASK_LIMIT_REACHED, 0.0, result.observation, result.info)

    def _finish(
        self, status: Status, reward: float, observation: str | None, info: dict
    ) -> StepResult:
        """End the running episode with its final status and reward."""
        self._done = True
        return StepResult(
            observation=observation, done=True, reward=reward, status=status, info=info
        )


def no_episode_result() -> StepResult:
    """What ``step`` returns outside a running episode: a task error, never an exception."""
    return StepResult(
        observation=None,
        done=True,
        status=Status.TASK_ERROR,
        info={"error": "step() without a running episode; call reset() first"},
    )


def first_user_after_demo(messages: list[Message]) -> str:
    """The first user turn after the last demonstration (``loss: False``) turn."""
    last_demo = max((i for i, m in enumerate(messages) if m.get("loss") is False), default=-1)
    for m in messages[last_demo + 1 :]:
        if m["role"] == "user":
            return m["content"]
    raise ValueError("conversation has no user turn after the demonstration")


class EnvServerLost(ConnectionError):
    """The server an episode runs on did not answer (refused, reset, timed out): the
    episode is restarted like one whose actor died (on another server where there is one)."""
