"""The Env contract as a check any family can run: ``agentray env check module:Class`` or
``check_env(...)`` in a plug-in's own tests (``assert_env_ok``).

Each check plays the family the way collect, eval and the process stage will: the class and
its typed config, stable seeded splits, the opening turns (a demonstration the model is not
trained on, the problem last), the episode's states (no step outside an episode, the expert
solves its tasks, replies that are no action end within ``max_rounds`` unrewarded), and the
record of an expert episode through the process stage's filter."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentray.envs.base import Env, FamilyConfig
from agentray.envs.episode import run_episode, scripted
from agentray.envs.registry import ENVS
from agentray.records import EpisodeResult, Trajectory, env_version_of, to_conversations
from agentray.registry import registered_for_now
from agentray.types import Status


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class EnvReport:
    family: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def problems(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]


class ContractViolation(AssertionError):
    """A family broke the Env contract; the message lists each broken check."""


def check_env(
    family: str | type[Env], config: dict[str, Any] | FamilyConfig | None = None, tasks: int = 3
) -> EnvReport:
    """Runs every contract check on ``family`` (a registered name, ``module:Class`` or the
    class) with ``config`` (its defaults when None), playing ``tasks`` tasks of each split.
    A check that raises fails with the exception; the later ones still run where they can."""
    cls = ENVS.get(family) if isinstance(family, str) else family  # KeyError names it
    report = EnvReport(getattr(cls, "name", repr(cls)))
    state: dict[str, Any] = {"cls": cls, "config": config, "tasks": tasks}
    for name, needs, check in CHECKS:
        missing = [NEEDS[key] for key in needs if key not in state]
        if missing:
            report.checks.append(Check(name, False, f"not run: {missing[0]}"))
            continue
        try:
            detail = check(state)
            report.checks.append(Check(name, True, detail or ""))
        except ContractViolation as e:  # our own words
            report.checks.append(Check(name, False, str(e)))
        except Exception as e:  # noqa: BLE001 - a broken family may raise anything
            where = traceback.extract_tb(e.__traceback__)[-1]
            report.checks.append(
                Check(name, False, f"{type(e).__name__}: {e} ({where.filename}:{where.lineno})")
            )
    if "env" in state:
        state["env"].close()
    return report


def assert_env_ok(family: str | type[Env], config: Any = None, tasks: int = 3) -> EnvReport:
    """``check_env``, raising ``ContractViolation`` listing every broken check."""
    report = check_env(family, config, tasks)
    if not report.ok:
        raise ContractViolation(f"{report.family}: " + "; ".join(report.problems()))
    return report


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise ContractViolation(problem)


def _class(state: dict) -> str:
    cls = state["cls"]
    _require(isinstance(cls, type) and issubclass(cls, Env), f"{cls!r} is not an Env subclass")
    _require(
        isinstance(getattr(cls, "name", None), str) and cls.name.isidentifier(),
        'the class needs a family name: `name = "..."` (an identifier)',
    )
    _require(issubclass(cls.config_cls, FamilyConfig), "config_cls is not a FamilyConfig")
    reason = cls.unavailable()
    _require(reason is None, f"cannot run on this host: {reason}")
    config = state["config"]
    if isinstance(config, dict):
        config = cls.config_cls(**config)
    state["env"] = cls(config)
    return f"{cls.__module__}.{cls.__qualname__}, config {cls.config_cls.__name__}"


def _splits(state: dict) -> str:
    env, cls = state["env"], state["cls"]
    train, test = env.tasks("train"), env.tasks("test")
    _require(bool(train) and bool(test), f"a split is empty (train {len(train)}, test {len(test)})")
    for split, tasks in (("train", train), ("test", test)):
        ids = [t.id for t in tasks]
        _require(len(set(ids)) == len(ids), f"{split} has repeated ids")
        bad = [t.id for t in tasks if not t.id.startswith(f"{cls.name}_")]
        _require(not bad, f"ids must be <family>_<n>, got {bad[:3]}")
        wrong = [t.id for t in tasks if t.family != cls.name or t.split != split]
        _require(not wrong, f"tasks with another family or split: {wrong[:3]}")
    overlap = {t.id for t in train} & {t.id for t in test}
    _require(not overlap, f"train and test share ids {sorted(overlap)[:3]}")
    again = type(env)(env.config)
    same = [t.id for t in again.tasks("train")] == [t.id for t in train]
    _require(same and again.tasks("train")[0].payload == train[0].payload, "splits are not stable")
    again.close()
    state["plays"] = train[: state["tasks"]] + test[: state["tasks"]]
    return f"train {len(train)}, test {len(test)}, seeded and stable"


def _opening_turns(state: dict) -> str:
    env = state["env"]
    for task in state["plays"]:
        messages = env.prompt(task)
        _require(bool(messages) and messages[-1]["role"] == "user", f"{task.id}: must end in user")
        roles = [m["role"] for m in messages if m["role"] != "system"]
        _require(set(roles) <= {"user", "assistant"}, f"{task.id}: roles {sorted(set(roles))}")
        _require(
            all(a != b for a, b in zip(roles, roles[1:], strict=False)),
            f"{task.id}: user and assistant turns must alternate (chat templates need it)",
        )
        demo = [m for m in messages if m["role"] == "assistant"]
        _require(
            all(m.get("loss") is False for m in demo),
            f"{task.id}: demonstration turns need loss: False (the model is not trained on them)",
        )
        _require(env.prompt(task) == messages, f"{task.id}: prompt() is not pure")
        _require(bool(env.problem_of(messages).strip()), f"{task.id}: problem_of() is empty")
    return f"{len(state['plays'])} prompts end with the problem; demonstrations not trained on"


def _no_step_outside_an_episode(state: dict) -> str:
    env = state["env"]
    fresh = type(env)(env.config)
    _require(fresh.step("anything").status == Status.TASK_ERROR, "a step before reset is no error")
    fresh.close()
    return "a step before reset is a task_error"


def _expert_solves(state: dict) -> str:
    env = state["env"]
    episodes = []
    for task in state["plays"]:
        episode = run_episode(env, task, scripted(env.expert_actions(task)))
        result = episode.result
        _require(
            result.done and result.status == Status.COMPLETED and result.reward == 1.0,
            f"{task.id}: the expert ends {result.status.value} with reward {result.reward}",
        )
        _require(
            env.step("anything").status == Status.TASK_ERROR, "a step after the end is no error"
        )
        episodes.append((task, episode))
    state["episodes"] = episodes
    return f"{len(state['plays'])} tasks completed with reward 1"


def _invalid_replies(state: dict) -> str:
    env = state["env"]
    task = state["plays"][0]
    episode = run_episode(env, task, lambda messages: "this reply is no action")
    result = episode.result
    _require(result.done, "replies that are no action never end the episode")
    _require(
        1 <= len(episode.step_s) <= env.config.max_rounds,
        f"{len(episode.step_s)} rounds, more than max_rounds {env.config.max_rounds}",
    )
    _require(
        result.status != Status.TASK_ERROR and result.reward == 0.0,
        f"ends {result.status.value} with reward {result.reward} (expected unrewarded, not task_error)",
    )
    env.reset(task)
    env.close()
    _require(env.step("anything").status == Status.TASK_ERROR, "a step after close is no error")
    return f"ends {result.status.value} after {len(episode.step_s)} rounds"


def _record_round_trip(state: dict) -> str:
    from agentray.process import ProcessConfig, classify_trajectory

    env = state["env"]
    task, episode = state["episodes"][0]
    result = EpisodeResult(messages=episode.messages)
    result.finish(episode.result.reward, episode.result.status)
    record = Trajectory.from_episode(
        task, result, env_version_of(env.name, env.version), {"name": "expert"}
    )
    again = Trajectory.from_row(record.to_row())
    _require(again == record, "the record changes through its parquet row")
    if env.name in ENVS:
        kept = classify_trajectory(record, ProcessConfig())
    else:  # a class handed over directly: the filter must know its name while it runs
        target = f"{type(env).__module__}:{type(env).__qualname__}"
        with registered_for_now(ENVS, env.name, target):
            kept = classify_trajectory(record, ProcessConfig())
    _require(kept["reject_reason"] == "", f"the process stage rejects it: {kept['reject_reason']}")
    _require(
        json.loads(kept["conversations"]) == to_conversations(episode.messages),
        "the AgentInstruct record differs from the episode's turns",
    )
    return "kept by the process stage's filter, conversations intact"


# What a check needs from the ones before it, and what to say when that is missing.
NEEDS = {
    "env": "the family cannot be built (see class)",
    "plays": "no tasks to play (see splits)",
    "episodes": "no expert episode to record (see expert solves its tasks)",
}
CHECKS: list[tuple[str, tuple[str, ...], Callable[[dict], str | None]]] = [
    ("class", (), _class),
    ("splits", ("env",), _splits),
    ("opening turns", ("plays",), _opening_turns),
    ("no step outside an episode", ("env",), _no_step_outside_an_episode),
    ("expert solves its tasks", ("plays",), _expert_solves),
    ("replies that are no action", ("plays",), _invalid_replies),
    ("record round trip", ("episodes",), _record_round_trip),
]

__all__ = ["Check", "ContractViolation", "EnvReport", "assert_env_ok", "check_env"]
