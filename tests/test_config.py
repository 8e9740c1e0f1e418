"""A bad config field fails before any work starts, naming itself and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from agentray.cli import app
from agentray.config import ConfigError, load_config


def _write(tmp_path, data) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_defaults_validate_and_propagate_model(tmp_path):
    cfg = load_config(_write(tmp_path, {"run_dir": str(tmp_path), "model": "some/model"}))
    assert cfg.train.model == "some/model"
    assert cfg.process.model == "some/model"
    assert set(cfg.collect.families) >= {"db", "os"}


def test_unknown_field_names_itself_and_allowed_fields(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, {"collect": {"max_taks_per_family": 3}}))
    message = str(err.value)
    assert "collect.max_taks_per_family" in message
    assert "max_tasks_per_family" in message  # listed among the allowed fields


def test_bad_value_names_field_and_allowed_values(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, {"eval": {"split": "validation"}}))
    message = str(err.value)
    assert "eval.split" in message and "'train'" in message and "'test'" in message


def test_unknown_env_family_is_rejected(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, {"collect": {"families": ["db", "chess"]}}))
    assert "collect.families" in str(err.value) and "chess" in str(err.value)


def test_nested_rollout_field_is_checked(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, {"collect": {"rollout": {"max_in_flight": 0}}}))
    assert "collect.rollout.max_in_flight" in str(err.value)


def test_cli_stops_before_work_with_exit_code_2(tmp_path):
    path = _write(tmp_path, {"run_dir": str(tmp_path / "run"), "train": {"zero_stagee": 2}})
    result = CliRunner().invoke(app, ["train", path])
    assert result.exit_code == 2
    assert "train.zero_stagee" in result.output
    assert not (tmp_path / "run").exists()  # nothing started


def test_readme_config_reference_is_current():
    """The README documents every config field; regenerate with scripts/update_readme.py."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "update_readme", root / "scripts" / "update_readme.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (root / "README.md").read_text()
    assert module.render(text) == text, (
        "README config reference is stale: python scripts/update_readme.py"
    )


def test_quickstart_yaml_is_what_the_quickstart_command_runs():
    from agentray.pipeline import quickstart_config

    root = Path(__file__).resolve().parents[1]
    from_file = load_config(root / "configs" / "quickstart.yaml")
    assert from_file.model_dump() == quickstart_config("runs/quickstart").model_dump()
