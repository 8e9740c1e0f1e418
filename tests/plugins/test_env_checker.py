"""The public contract checker (``check_env``, ``agentray env check``): every family of the
tree passes it, and a family that breaks one rule of the contract is told which, in words."""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agentray.cli import app
from agentray.envs.registry import FAMILIES, env_class
from agentray.testing.env_check import ContractViolation, assert_env_ok, check_env
from agentray.types import Status

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "agentray-treasure"
sys.path.insert(0, str(EXAMPLE))  # the example plug-in's module, as its own tests import it
from agentray_treasure.env import TreasureEnv  # noqa: E402

SMALL = {"n_train": 6, "n_test": 3}


@pytest.mark.parametrize(
    "family",
    [
        pytest.param(
            name, marks=pytest.mark.skipif(bool(r := env_class(name).unavailable()), reason=r or "")
        )
        for name in FAMILIES
    ],
)
def test_every_family_of_the_tree_passes_the_checker(family):
    report = assert_env_ok(family, SMALL, tasks=2)
    assert len(report.checks) == 7 and report.family == family


class TwoUserTurns(TreasureEnv):
    def prompt(self, task):
        return [
            *super().prompt(task)[:-1],
            {"role": "user", "content": "Hi."},
            super().prompt(task)[-1],
        ]


class DemoTrainedOn(TreasureEnv):
    def prompt(self, task):
        return [{k: v for k, v in m.items() if k != "loss"} for m in super().prompt(task)]


class ExpertLoses(TreasureEnv):
    def expert_actions(self, task):
        return ["Action: open chest"] * 2


class BadIds(TreasureEnv):
    def tasks(self, split):
        return [t.model_copy(update={"id": f"x{t.id}"}) for t in super().tasks(split)]


class Unstable(TreasureEnv):
    def tasks(self, split):
        tasks = super().tasks(split)
        random.shuffle(tasks)  # unseeded: another order in another process
        return tasks


class AnythingWins(TreasureEnv):
    def parse(self, reply):
        return "open chest"

    def act(self, action):
        return self._finish(Status.COMPLETED, 1.0, None, {})


class NotAnEnv:
    name = "nope"


@pytest.mark.parametrize(
    ("family", "broken", "words"),
    [
        (TwoUserTurns, "opening turns", "must alternate"),
        (DemoTrainedOn, "opening turns", "loss: False"),
        (ExpertLoses, "expert solves its tasks", "the expert ends"),
        (BadIds, "splits", "ids must be <family>_<n>"),
        (Unstable, "splits", "not stable"),
        (AnythingWins, "replies that are no action", "ends completed with reward 1.0"),
        (NotAnEnv, "class", "is not an Env subclass"),
    ],
)
def test_a_broken_rule_is_named_in_words(family, broken, words):
    report = check_env(family, SMALL, tasks=2)
    failed = [c for c in report.checks if not c.ok]
    assert failed[0].name == broken and words in failed[0].detail, failed
    # the checks that need what the broken one gives are not run, and say why
    consequences = {c.name: c.detail for c in failed[1:]}
    assert all(
        d.startswith("not run: ") for n, d in consequences.items() if n != "record round trip"
    )
    if family is TwoUserTurns:  # the process stage rejects such a record too
        assert "turns alternate" in consequences["record round trip"]
    elif broken == "splits":
        assert len(consequences) == 4  # opening turns, expert, no-action replies, record
    else:
        assert len(consequences) == {NotAnEnv: 6, ExpertLoses: 1}.get(family, 0), failed
    with pytest.raises(ContractViolation, match=broken):
        assert_env_ok(family, SMALL, tasks=2)


def test_the_cli_checks_a_module_in_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "two_turns.py").write_text(
        f"import sys\nsys.path.insert(0, {str(EXAMPLE)!r})\n"
        "from agentray_treasure.env import TreasureEnv\n\n\n"
        "class TwoTurns(TreasureEnv):\n    name = 'two_turns'\n\n"
        "    def prompt(self, task):\n        p = super().prompt(task)\n"
        "        return [*p[:-1], {'role': 'user', 'content': 'Hi.'}, p[-1]]\n"
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["env", "check", "two_turns:TwoTurns", "--tasks", "1"])
    assert result.exit_code == 1, result.output
    assert (
        "FAIL opening turns: two_turns_0: user and assistant turns must alternate" in result.stdout
    )
    assert "two_turns: 2 of 7 checks failed" in result.stderr  # the record is rejected too
    result = CliRunner().invoke(app, ["env", "check", "no_such_module:Env"])
    assert result.exit_code == 2 and "No module named 'no_such_module'" in result.stderr


def test_a_plugin_section_in_envs_is_typed_by_its_own_config(tmp_path):
    from agentray.config import ConfigError, load_config

    target = "agentray_treasure.env:TreasureEnv"
    data = {"collect": {"families": ["db", target]}, "envs": {"treasure": {"rooms": 6}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    cfg = load_config(path)
    assert cfg.collect.families == ["db", "treasure"] and cfg.envs.treasure.rooms == 6
    data["envs"]["treasure"] = {"roomz": 6}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"envs\.treasure\.roomz: unknown field"):
        load_config(path)


def test_a_plugin_policy_is_named_by_import_path_with_typed_options(tmp_path):
    from agentray.config import ConfigError, load_config
    from agentray.policies.config import PluginPolicyConfig
    from agentray.policies.registry import make_policy

    path = tmp_path / "c.yaml"
    policy = {"backend": "agentray_treasure.policy:WanderingGuide", "options": {"detours": 3}}
    path.write_text(yaml.safe_dump({"collect": {"policy": policy}}))
    cfg = load_config(path)
    assert isinstance(cfg.collect.policy, PluginPolicyConfig)
    assert make_policy(cfg.collect.policy).options.detours == 3
    for bad, where in (
        ({**policy, "options": {"detours": -1}}, "collect.policy.options.detours"),
        ({**policy, "backend": "no_module:Guide"}, "No module named 'no_module'"),
        ({"backend": "no_such_backend"}, "unknown policy backend 'no_such_backend'"),
    ):
        path.write_text(yaml.safe_dump({"collect": {"policy": bad}}))
        with pytest.raises(ConfigError, match=re.escape(where)):
            load_config(path)
