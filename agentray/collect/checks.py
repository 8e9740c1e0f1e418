"""What collect and eval check before they run any episode (the policy's endpoint answers;
the expert can play every family of the run), and how they watch the episodes they run
(each task_error printed as it happens, rate-limited, and counted for the loud end)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from agentray.envs.config import EnvsConfig, family_config
from agentray.envs.registry import make_env
from agentray.failures import ErrorLog, StageFailed
from agentray.policies.config import AnyPolicyConfig, OpenAIConfig
from agentray.records import Trajectory
from agentray.types import Status, TaskSpec


class PolicyCannotPlay(StageFailed):
    """The run's policy cannot play one of its families (found before any episode ran)."""


def preflight_policy(policy: AnyPolicyConfig, role: str = "policy") -> dict[str, Any] | None:
    """Check an openai policy's endpoint (``EndpointUnavailable`` if it does not answer);
    None for backends without one, or with ``preflight: false``."""
    if not isinstance(policy, OpenAIConfig) or not policy.preflight:
        return None
    from agentray.policies.preflight import check_endpoint

    return check_endpoint(policy, role)


def check_expert_plays(
    policy: AnyPolicyConfig, tasks: Iterable[TaskSpec], envs: EnvsConfig
) -> None:
    """With the expert policy: every family among ``tasks`` must have a scripted expert.
    It plays whatever task an episode carries, so it knows every family of the run; one
    whose ``expert_actions`` fails (or plans nothing) for its first task fails here, at
    load, instead of as a task_error on every episode."""
    if policy.backend != "expert":
        return
    first: dict[str, TaskSpec] = {}
    for task in tasks:
        first.setdefault(task.family, task)
    for family, task in first.items():
        env = make_env(family, family_config(envs, family))
        try:
            plan = env.expert_actions(task)
        except Exception as e:
            raise PolicyCannotPlay(
                f"the expert policy cannot play family {family!r}: expert_actions({task.id}) "
                f"raised {type(e).__name__}: {e}; collect it with another policy "
                "(backend openai, hf or vllm) or leave it out of families"
            ) from e
        finally:
            env.close()
        if not plan or not all(isinstance(action, str) for action in plan):
            raise PolicyCannotPlay(
                f"the expert policy cannot play family {family!r}: expert_actions({task.id}) "
                f"returned {plan!r}, not a list of replies"
            )


class WatchedSink:
    """A sink (``ParquetSink``) that also reports each task_error record to ``log`` as it
    is added; everything else is the sink's."""

    def __init__(self, sink: Any, log: ErrorLog) -> None:
        self._sink = sink
        self._log = log

    def add(self, record: Trajectory) -> bool:
        added = self._sink.add(record)
        if record.status == Status.TASK_ERROR:
            self._log.add(f"task_error {record.id}", record.error)
        return added

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)


def task_errors(summary: dict[str, Any]) -> int:
    """task_error episodes in a rollout summary (``RolloutEngine.run``'s)."""
    return sum(f["statuses"].get(Status.TASK_ERROR.value, 0) for f in summary["families"].values())
