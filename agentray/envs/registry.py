"""Env families by name. A new family in the tree is one package (``agentray/envs/<family>/``,
exporting its Env class) plus one line in ``FAMILIES``; outside the tree it is a plug-in: an
installed package's entry point in the ``agentray.envs`` group, or a ``module:Class`` a
config names (``register_family``). Whether a family trains (held-in) or is only evaluated
(held-out) is each run's choice; ``HELD_OUT_FAMILIES`` only keeps some out of the defaults."""

from __future__ import annotations

import hashlib

from agentray.envs.base import Env, FamilyConfig
from agentray.registry import Registry
from agentray.types import Message, TaskSpec

FAMILIES: dict[str, str] = {
    "db": "agentray.envs.db:DBEnv",
    "os": "agentray.envs.os:OSEnv",
    "kg": "agentray.envs.kg:KGEnv",
    "alfworld": "agentray.envs.alfworld:AlfWorldEnv",
    "webshop": "agentray.envs.webshop:WebShopEnv",
    "mind2web": "agentray.envs.mind2web:Mind2WebEnv",
}

# Held-out families: real environments from an optional extra (pip install 'agentray[heldout]').
# They are never in the defaults (``family_names()``), which are the held-in families.
HELD_OUT_FAMILIES: dict[str, str] = {
    "scienceworld": "agentray.envs.scienceworld:ScienceWorldEnv",
    "miniwob": "agentray.envs.miniwob:MiniWoBEnv",
    # remote families: episodes on servers over HTTP (agentray.envs.remote)
    "agentgym": "agentray.envs.remote.agentgym:AgentGymEnv",
    "agentbench": "agentray.envs.remote.agentbench:AgentBenchEnv",
    "openenv": "agentray.envs.remote.openenv:OpenEnvEnv",
}


ENVS: Registry[Env] = Registry(
    "env family", {**FAMILIES, **HELD_OUT_FAMILIES}, group="agentray.envs"
)


def family_names(held_out: bool = False) -> list[str]:
    """The held-in families (the defaults), plus, when ``held_out``, every other known one:
    the held-out families and the plug-ins."""
    return list(FAMILIES) + ([n for n in ENVS.names() if n not in FAMILIES] if held_out else [])


def register_family(target: str) -> str:
    """Registers the Env subclass ``target`` (``package.module:Class``) under its ``name``
    here and in every Ray worker started afterwards; returns that name. A ``ValueError``
    says what is wrong with it."""
    cls = ENVS.subclass(target, Env)
    name = getattr(cls, "name", None)
    if name == target:  # a family named by its own import path needs no registration
        return name
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f'{target} has no family name (a class attribute `name = "..."`)')
    ENVS.register(name, target)
    return name


def env_class(name: str) -> type[Env]:
    return ENVS.get(name)


def metric_label(name: str) -> str:
    """What a family's score (mean reward x 100) measures; the default for unknown names."""
    return env_class(name).metric_label if name in ENVS else Env.metric_label


def keep_threshold(name: str) -> float | None:
    """A family's own keep threshold for the process stage (None: the stage's default)."""
    return env_class(name).keep_threshold if name in ENVS else None


def reference_name(name: str) -> str:
    """A task's name in the paper's reference table (a family may be named otherwise there)."""
    return (env_class(name).reference_name or name) if name in ENVS else name


def make_env(name: str, config: FamilyConfig | dict | None = None) -> Env:
    cls = env_class(name)
    if isinstance(config, dict):
        config = cls.config_cls(**config)
    return cls(config)


def family_of(task_id: str) -> str:
    """``"db_12"`` -> ``"db"`` (ids are ``<family>_<n>``)."""
    return task_id.rsplit("_", 1)[0]


class TaskIndex:
    """Finds the task a conversation is about, from its problem text.

    Lets a policy that only sees messages (the expert, the test endpoint) replay the
    expert's plan for that task.
    """

    def __init__(self, configs: dict[str, FamilyConfig | dict | None]) -> None:
        self._by_problem: dict[str, tuple[Env, TaskSpec]] = {}
        self._envs: dict[int, Env] = {}  # each env once, in the order first added
        for name, cfg in configs.items():
            env = make_env(name, cfg)
            for split in ("train", "test"):
                for task in env.tasks(split):
                    self.add(env, task)

    def add(self, env: Env, task: TaskSpec) -> None:
        messages = env.prompt(task)
        self._by_problem[_key(env.problem_of(messages))] = (env, task)
        self._envs.setdefault(id(env), env)

    def lookup(self, messages: list[Message]) -> tuple[Env, TaskSpec]:
        for env in self._envs.values():
            try:
                hit = self._by_problem.get(_key(env.problem_of(messages)))
            except ValueError:
                continue
            if hit is not None:
                return hit
        raise KeyError("no known task matches this conversation")


def _key(text: str) -> str:
    return hashlib.sha1(text.strip().encode()).hexdigest()
