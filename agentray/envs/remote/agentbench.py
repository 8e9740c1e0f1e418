"""AgentBench v0.2's task-worker API (``src/server/task_worker.py``), spoken to a worker
directly (its ``/api`` prefix in each URL, e.g. ``http://host:5001/api``):

``GET /get_indices`` -> the task's sample indices; ``POST /start_sample`` with ``{"index",
"session_id"}`` -> ``{"session_id", "output": TaskOutput}``; ``POST /interact`` with
``{"session_id", "agent_response": {"status": "normal", "content"}}`` -> the same (a 501
carries the TaskOutput of a task error); ``POST /cancel``; ``POST /calculate_overall``
with ``{"name", "results": [TaskOutput]}`` -> the task's own metrics.

A TaskOutput's ``history`` is the whole conversation (``user`` / ``agent`` turns); the
agent turns sent before the first reply are demonstrations. A finished sample's reward is
``result[reward_key]`` (a number or bool), or, with ``overall_metric``, the task's own
``calculate_overall`` over that one sample (AgentBench tasks that score only in aggregate,
e.g. DBBench v0.2).
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import Field

from agentray.envs.remote.base import RemoteConfig, RemoteEnv, mark_demonstrations
from agentray.envs.remote.http import RemoteEnvError, call
from agentray.types import Message, Status, StepResult

STATUS = {
    "running": Status.RUNNING,
    "completed": Status.COMPLETED,
    "agent context limit": Status.AGENT_CONTEXT_LIMIT,
    "agent validation failed": Status.AGENT_INVALID_ACTION,
    "agent invalid action": Status.AGENT_INVALID_ACTION,
    "task limit reached": Status.TASK_LIMIT_REACHED,
    "unknown": Status.TASK_ERROR,
    "task error": Status.TASK_ERROR,
}


class AgentBenchConfig(RemoteConfig):
    """AgentBench v0.2 task workers of one task (urls end in /api)."""

    task_name: str = Field(
        "", description="the AgentBench task's name (sent to calculate_overall), e.g. dbbench-std"
    )
    split: str = Field(
        "test",
        description="the split the workers' indices (get_indices) belong to; the other split "
        "is empty unless train_indices / test_indices name its indices",
    )
    reward_key: str = Field(
        "reward",
        description="the key of a finished sample's result that holds its reward (a number "
        "or bool; dotted for nested keys)",
    )
    overall_metric: str | None = Field(
        None,
        description="when set, a sample's reward is this key (dotted) of calculate_overall "
        "over that one sample, not result[reward_key]",
    )


class AgentBenchEnv(RemoteEnv):
    name = "agentbench"
    protocol = "AgentBench"
    config_cls = AgentBenchConfig
    config: AgentBenchConfig

    _session_id: int | None = None
    _history: int = 0

    def listing(self) -> list[dict[str, Any]] | None:
        listed = super().listing()  # an agentray server lists splits and expert replies
        if listed is not None:
            return listed
        indices = self._get_first("/get_indices").json()
        return [{"index": i, "split": self.config.split} for i in indices]

    def open(self, index: int | str) -> list[Message]:
        self._session_id = random.getrandbits(62)
        body = {"index": index, "session_id": self._session_id}
        output = self._post("/start_sample", body).json()["output"]
        if output["status"] != "running":
            self._session_id = None
            raise RuntimeError(f"{self.url}/start_sample({index}): {output['status']}: {output}")
        history = output["history"]
        self._history = len(history)
        return mark_demonstrations([_message(item) for item in history])

    def send(self, reply: str) -> StepResult:
        body = {
            "session_id": self._session_id,
            "agent_response": {"status": "normal", "content": reply},
        }
        try:
            output = self._post("/interact", body).json()["output"]
        except RemoteEnvError as e:
            if e.status != 501:
                raise
            output = _detail_output(e)
        status = STATUS.get(output["status"], Status.TASK_ERROR)
        if status == Status.RUNNING:
            history = output["history"]
            return StepResult(observation=history[-1]["content"], done=False)
        self._session_id = None  # the worker ended the sample itself
        return StepResult(
            observation=None,
            done=True,
            reward=self.reward(output) if status != Status.TASK_ERROR else 0.0,
            status=status,
            info={"output": output},  # the TaskOutput, for calculate_overall over a run
        )

    def reward(self, output: dict[str, Any]) -> float:
        """A finished sample's reward (``reward_key`` of its result, or ``overall_metric``
        of calculate_overall over it)."""
        if self.config.overall_metric:
            metrics = self.overall([output], url=self.url)
            return float(_dotted(metrics, self.config.overall_metric, "calculate_overall"))
        return float(_dotted(output.get("result"), self.config.reward_key, "result"))

    def overall(self, outputs: list[dict[str, Any]], url: str | None = None) -> dict[str, Any]:
        """The task's ``calculate_overall`` over TaskOutputs (its own scores)."""
        body = {"name": self.config.task_name, "results": outputs}
        target = (url or self.config.urls[0]) + "/calculate_overall"
        return call("POST", target, json=body, timeout=self._timeout()).json()

    def end(self) -> None:
        if self._session_id is not None:
            self._post("/cancel", {"session_id": self._session_id}, ok=(400,))
            self._session_id = None


def _message(item: dict[str, str]) -> Message:
    role = "assistant" if item["role"] == "agent" else "user"
    return {"role": role, "content": item["content"]}


def _detail_output(error: RemoteEnvError) -> dict[str, Any]:
    """The TaskOutput in a worker's 501 answer (``detail.output``)."""
    import json

    try:
        return json.loads(error.body)["detail"]["output"]
    except (ValueError, KeyError, TypeError):
        raise error from None


def _dotted(value: Any, path: str, what: str) -> Any:
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            raise KeyError(f"the sample's {what} has no {path!r}: {str(value)[:200]}")
        value = value[key]
    return value
