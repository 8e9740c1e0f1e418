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


# ---------------------------------------------------------------- typed to the leaf

TYPOS = [
    ({"envs": {"db": {"n_trian": 5}}}, "envs.db.n_trian", "n_train"),
    (
        {"collect": {"policy": {"params": {"temprature": 0.9}}}},
        "collect.policy.params.temprature",
        "temperature",
    ),
]

# The CLI run as a process; at exit it reports whether this process started Ray.
_CLI = (
    "import atexit, sys\n"
    "def report():\n"
    "    ray = sys.modules.get('ray')\n"
    "    sys.stderr.write(f'RAY_STARTED={bool(ray and ray.is_initialized())}\\n')\n"
    "atexit.register(report)\n"
    "from agentray.cli import app\n"
    "app()\n"
)


STAGE_COMMANDS = ["instruct", "collect", "process", "train", "serve", "eval", "pipeline"]
# Both typos through show-config and collect; the params typo through every other stage too.
TYPO_CASES = [
    (command, *typo)
    for command in ["show-config", *STAGE_COMMANDS]
    for typo in (TYPOS if command in ("show-config", "collect") else TYPOS[1:])
]


@pytest.mark.parametrize(("command", "data", "path", "allowed"), TYPO_CASES)
def test_leaf_typo_fails_at_load_with_exit_2_before_ray(tmp_path, data, path, allowed, command):
    """A typo in a family's settings or in generation params stops `agentray show-config`
    and every stage command at load (exit 2, the field's path and the allowed names),
    before Ray starts and before anything is written."""
    import os
    import subprocess
    import sys

    config = _write(tmp_path, {"run_dir": str(tmp_path / "run"), **data})
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "RAY_ADDRESS": ""}
    result = subprocess.run(
        [sys.executable, "-c", _CLI, command, config],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert f"{path}: unknown field; allowed here:" in result.stderr
    assert allowed in result.stderr.split(path, 1)[1]
    assert "RAY_STARTED=False" in result.stderr
    for ray_line in ("Started a local Ray instance", "Connecting to existing Ray cluster"):
        assert ray_line not in result.stderr + result.stdout
    assert not (tmp_path / "run").exists()


def test_every_leaf_model_forbids_unknown_fields(tmp_path):
    cases = {
        "eval.policy.params.top_k": {"eval": {"policy": {"params": {"top_k": 5}}}},
        "instruct.teacher.params.temp": {"instruct": {"teacher": {"params": {"temp": 1}}}},
        "eval.general.mt_bench.judge.params.x": {
            "eval": {"general": {"mt_bench": {"judge": {"model": "gpt-4", "params": {"x": 1}}}}}
        },
        "collect.policy.device": {"collect": {"policy": {"backend": "expert", "device": "cuda"}}},
        "envs.webshop.n_product": {"envs": {"webshop": {"n_product": 10}}},
        "envs.chess": {"envs": {"chess": {}}},
    }
    for path, data in cases.items():
        with pytest.raises(ConfigError) as err:
            load_config(_write(tmp_path, data))
        assert f"{path}: unknown field; allowed here: " in str(err.value), str(err.value)


def test_allowed_fields_resolve_through_unions_and_families():
    from agentray.config import _allowed_fields

    assert "temperature" in _allowed_fields(("collect", "policy", "expert", "params", "x"))
    openai = _allowed_fields(("collect", "policy", "openai", "x"))
    assert "base_url" in openai and "device" not in openai
    assert "device" in _allowed_fields(("eval", "policy", "hf", "x"))
    assert "n_products" in _allowed_fields(("envs", "webshop", "x"))
    assert "db" in _allowed_fields(("envs", "x")) and "miniwob" in _allowed_fields(("envs", "x"))


def test_each_backend_has_its_own_config_and_defaults_by_place(tmp_path):
    from agentray.policies.config import ExpertConfig, HFConfig, OpenAIConfig, VLLMConfig

    cfg = load_config(_write(tmp_path, {}))
    assert isinstance(cfg.collect.policy, ExpertConfig)  # the offline teacher by default
    assert isinstance(cfg.eval.policy, OpenAIConfig)  # the served model by default
    data = {
        "collect": {"policy": {"backend": "hf", "model": "m", "device": "cuda"}},
        "eval": {"policy": {"model": "agentray", "base_url": "http://x/v1"}},
        "instruct": {"teacher": {"backend": "vllm", "gpu_memory_utilization": 0.5}},
    }
    cfg = load_config(_write(tmp_path, data))
    assert isinstance(cfg.collect.policy, HFConfig) and cfg.collect.policy.device == "cuda"
    assert isinstance(cfg.eval.policy, OpenAIConfig) and cfg.eval.policy.base_url == "http://x/v1"
    assert isinstance(cfg.instruct.teacher, VLLMConfig)
    assert cfg.instruct.teacher.params.temperature == 0.7  # the teacher's own defaults
    with pytest.raises(ConfigError, match="cannot write tasks"):
        load_config(_write(tmp_path, {"instruct": {"teacher": {"backend": "expert"}}}))


def test_envs_section_is_typed_per_family(tmp_path):
    from agentray.envs.registry import ENVS, env_class

    cfg = load_config(_write(tmp_path, {"envs": {"db": {"n_train": 5}}}))
    for name in ENVS.names():
        assert isinstance(getattr(cfg.envs, name), env_class(name).config_cls)
    assert cfg.envs.db.n_train == 5 and cfg.envs.os.n_train == 50
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, {"envs": {"db": {"n_train": "many"}}}))
    assert "envs.db.n_train" in str(err.value)


def test_deprecated_keys_still_load_with_a_warning_and_land_in_envs(tmp_path):
    from agentray.config import ConfigDeprecationWarning

    data = {
        "collect": {
            "family_configs": {"db": {"n_train": 7}},
            "policy": {"backend": "expert", "families": ["db"], "family_configs": {"os": {}}},
        },
        "eval": {"family_configs": {"db": {"n_train": 7}, "kg": {"n_test": 3}}},
        "instruct": {"family_configs": {"os": {"n_train": 50}}},
    }
    with pytest.warns(ConfigDeprecationWarning) as caught:
        cfg = load_config(_write(tmp_path, data))
    messages = "\n".join(str(w.message) for w in caught)
    for key in (
        "collect.family_configs",
        "eval.family_configs",
        "instruct.family_configs",
        "collect.policy.family_configs",
        "collect.policy.families",
    ):
        assert key in messages
    assert "envs" in messages  # the new key is named
    assert cfg.envs.db.n_train == 7 and cfg.envs.kg.n_test == 3 and cfg.envs.os.n_train == 50
    assert "family_configs" not in cfg.model_dump()["collect"]


def test_deprecated_key_disagreeing_with_envs_is_an_error(tmp_path):
    data = {"envs": {"db": {"n_train": 5}}, "collect": {"family_configs": {"db": {"n_train": 9}}}}
    with pytest.warns(FutureWarning), pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, data))
    assert "collect.family_configs.db disagrees with envs.db" in str(err.value)
    # the same settings twice are fine
    data["collect"]["family_configs"]["db"]["n_train"] = 5
    with pytest.warns(FutureWarning):
        assert load_config(_write(tmp_path, data)).envs.db.n_train == 5


def test_cli_prints_the_deprecation_warning(tmp_path):
    path = _write(tmp_path, {"collect": {"family_configs": {"db": {"n_train": 3}}}})
    result = CliRunner().invoke(app, ["show-config", path])
    assert result.exit_code == 0, result.output
    assert "warning: collect.family_configs is deprecated" in result.output
    shown = yaml.safe_load(result.output[result.output.index("run_dir:") :])
    assert shown["envs"]["db"]["n_train"] == 3


def test_config_reference_documents_families_and_every_backend():
    from agentray.config import config_reference

    text = config_reference()
    for title in ("**envs.db**", "**envs.webshop**", "**collect.policy.params**"):
        assert title in text
    for backend in ("expert", "openai", "hf", "vllm"):
        assert f"**collect.policy (backend: {backend})**" in text
    assert "`collect.policy.base_url`" in text and "`envs.webshop.n_products`" in text
    assert "family_configs" not in text


def test_a_family_can_be_named_by_import_path(tmp_path):
    from agentray.envs.registry import env_class
    from agentray.testing.per_process_env import NAME, PerProcessDBEnv

    assert env_class(NAME) is PerProcessDBEnv
    cfg = load_config(_write(tmp_path, {"collect": {"families": ["db", NAME]}}))
    assert cfg.collect.families == ["db", NAME]
    for bad in ("agentray.nothing_here:Env", "agentray.config:PipelineConfig"):
        with pytest.raises(ConfigError) as err:
            load_config(_write(tmp_path, {"collect": {"families": [bad]}}))
        assert "collect.families" in str(err.value) and bad in str(err.value)


def test_the_pipeline_points_eval_at_the_served_model():
    from agentray.pipeline import served_policy
    from agentray.policies.config import ExpertConfig, OpenAIConfig

    served = served_policy(OpenAIConfig(model="x", max_retries=7), "http://h/v1", "agentray")
    assert (served.model, served.base_url, served.max_retries) == ("agentray", "http://h/v1", 7)
    served = served_policy(ExpertConfig(params={"max_new_tokens": 9}), "http://h/v1", "m", "KEY")
    assert isinstance(served, OpenAIConfig) and served.api_key_env == "KEY"
    assert served.params.max_new_tokens == 9


def test_a_uri_run_dir_stays_a_uri_never_a_local_folder(tmp_path, monkeypatch):
    from agentray.pipeline import outputs_of, run_dir_of

    monkeypatch.chdir(tmp_path)
    cfg = load_config(_write(tmp_path, {"run_dir": "s3://bucket/run1/"}))
    assert run_dir_of(cfg) == "s3://bucket/run1"
    assert outputs_of(cfg, "process") == "s3://bucket/run1/process"
    assert not (tmp_path / "s3:").exists()


def test_inside_a_ray_job_a_relative_run_dir_is_refused(tmp_path, monkeypatch):
    from agentray.paths import RAY_JOB_ENV

    path = _write(tmp_path, {"run_dir": "runs/x"})
    assert load_config(path).run_dir == "runs/x"  # fine outside a job
    monkeypatch.setenv(RAY_JOB_ENV, "{}")
    with pytest.raises(ConfigError, match="'runs/x' is relative, and this is a Ray job"):
        load_config(path)
    absolute = str(tmp_path / "run")
    assert load_config(path, {"run_dir": absolute}).run_dir == absolute
