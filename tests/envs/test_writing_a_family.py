"""The README's "Writing a family" example is a working family: it is run as written, and
its episodes follow the contract the base class owns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from agentray.envs.episode import run_episode, scripted
from agentray.envs.registry import ENVS
from agentray.types import Status

README = Path(__file__).resolve().parents[2] / "README.md"


def _example_source() -> str:
    block = re.search(
        r"<!-- family-example:start -->\n```python\n(.*?)```\n<!-- family-example:end -->",
        README.read_text(),
        flags=re.S,
    )
    assert block, "README lost its family example"
    return block.group(1)


def _example() -> dict:
    namespace: dict = {"__name__": "readme_family"}
    exec(compile(_example_source(), "README.md", "exec"), namespace)
    return namespace


def test_the_readme_family_plays_by_the_contract():
    env = _example()["CountEnv"]()
    train, test = env.tasks("train"), env.tasks("test")
    assert [t.id for t in train[:2]] == ["count_0", "count_1"] and len(test) == 20
    assert {t.id for t in train}.isdisjoint(t.id for t in test)

    for task in train[:5]:
        episode = run_episode(env, task, scripted(env.expert_actions(task)))
        assert episode.result.status == Status.COMPLETED and episode.result.reward == 1.0
    assert env.step("Answer: 1").status == Status.TASK_ERROR  # no running episode

    invalid = run_episode(env, test[0], lambda messages: "no idea").result
    assert invalid.status == Status.AGENT_INVALID_ACTION and invalid.done

    wrong = run_episode(env, test[1], lambda messages: "Answer: -1")
    assert wrong.result.status == Status.TASK_LIMIT_REACHED
    assert len(wrong.step_s) == env.config.max_rounds == 3


def test_the_readme_family_is_typed_and_usable_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "readme_count.py").write_text(_example_source())
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = ENVS.get("readme_count:CountEnv")
    assert cls.name == "count" and cls.config_cls.__name__ == "CountConfig"
    with pytest.raises(ValidationError, match="max_roundz"):
        cls.config_cls(max_roundz=1)
