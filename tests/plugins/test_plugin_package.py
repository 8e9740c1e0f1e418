"""An env family from outside the tree: the example plug-in package (examples/agentray-treasure),
installed with pip, found by its entry-point name in every command; and a module of the user's
own named as ``module:Class``, through the CLI and through ``ray job submit`` on a cluster whose
nodes share no disk (the module travels to them)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agentray import storage
from agentray.testing.cluster import LocalCluster

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "agentray-treasure"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example plug-in, pip-installed into a folder of its own (on PYTHONPATH below)."""
    target = tmp_path_factory.mktemp("site")
    # built from a copy: setuptools leaves build/ and *.egg-info next to the sources, and an
    # egg-info on sys.path would register the entry points for every later test
    source = tmp_path_factory.mktemp("src") / EXAMPLE.name
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run([*pip, "--no-index", "--target", str(target), str(source)], check=True)
    assert (target / "agentray_treasure" / "env.py").exists()
    return target


def _agentray(args: list[str], cwd: Path, site: Path, **env: str) -> subprocess.CompletedProcess:
    run_env = {**os.environ, "PYTHONPATH": str(site), **env}
    return subprocess.run(
        [str(BIN / "agentray"), *args],
        cwd=cwd,
        env=run_env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _rows(trajectories: str) -> list:
    from agentray.collect.sink import read_trajectories

    return sorted(read_trajectories(trajectories), key=lambda r: (r.task, int(r.id.split("_")[-1])))


def test_the_installed_plugin_is_known_by_its_entry_point_name(site, tmp_path):
    listed = _agentray(["env", "list"], tmp_path, site)
    assert listed.returncode == 0, listed.stderr
    [line] = [line for line in listed.stdout.splitlines() if line.startswith("treasure ")]
    assert line.split() == ["treasure", "agentray_treasure.env:TreasureEnv", "plug-in"]

    checked = _agentray(["env", "check", "treasure", "--tasks", "2"], tmp_path, site)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "treasure: all 7 checks pass" in checked.stderr

    config = tmp_path / "treasure.yaml"
    run = tmp_path / "run"
    data = {
        "run_dir": str(run),
        "envs": {"treasure": {"rooms": 5, "n_train": 6, "n_test": 2}},
        "collect": {"families": ["treasure"], "rollout": {"num_env_pools": 1}},
    }
    config.write_text(yaml.safe_dump(data))
    data["envs"]["treasure"]["roomz"] = 5
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(data))
    typo = _agentray(["show-config", "typo.yaml"], tmp_path, site)
    assert typo.returncode == 2 and "envs.treasure.roomz: unknown field" in typo.stderr

    collected = _agentray(["collect", str(config)], tmp_path, site)
    assert collected.returncode == 0, collected.stderr[-3000:]
    rows = _rows(str(run / "collect" / "trajectories"))
    assert [r.id for r in rows] == [f"treasure_{i}" for i in range(6)]
    assert all(r.reward == 1.0 and r.status == "completed" and r.task == "treasure" for r in rows)

    # the plug-in's policy backend, by its entry-point name, with its own typed options
    data["envs"]["treasure"].pop("roomz")
    data["run_dir"] = str(tmp_path / "guided")
    data["collect"]["policy"] = {"backend": "wandering_guide", "options": {"detours": 2}}
    config.write_text(yaml.safe_dump(data))
    guided = _agentray(["collect", str(config)], tmp_path, site)
    assert guided.returncode == 0, guided.stderr[-3000:]
    for row, plain in zip(_rows(str(tmp_path / "guided/collect/trajectories")), rows, strict=True):
        # two turns staying put, then the expert's own walk
        assert row.id == plain.id and row.reward == 1.0 and row.turns == plain.turns + 2
        assert row.policy["name"] == "wandering_guide(detours=2)"
    data["collect"]["policy"]["options"] = {"detourz": 2}
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(data))
    typo = _agentray(["show-config", "typo.yaml"], tmp_path, site)
    assert typo.returncode == 2 and "collect.policy.options.detourz" in typo.stderr, typo.stderr

    # the plug-in's own test: agentray's checker, run by pytest in the plug-in's folder
    own = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(EXAMPLE)]
        + [str(EXAMPLE / "tests")],
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert own.returncode == 0 and "1 passed" in own.stdout, own.stdout[-2000:]


def _own_module(folder: Path) -> None:
    """A family of the user's own next to their config: the example's game under another name."""
    source = (EXAMPLE / "agentray_treasure" / "env.py").read_text()
    assert 'name = "treasure"' in source
    (folder / "my_game.py").write_text(source.replace('name = "treasure"', 'name = "my_game"'))


@pytest.mark.slow
def test_plugins_reach_every_node_through_the_cli_and_ray_job_submit(site, s3_bucket, tmp_path):
    """Nodes have the installed plug-in (their image has it: ``site`` stays visible on the
    isolated node), not the user's own module: that travels with the job."""
    folder = tmp_path / "mine"
    folder.mkdir()
    _own_module(folder)
    families = ["treasure", "my_game:TreasureEnv"]
    with LocalCluster({**os.environ, "PYTHONPATH": str(site)}) as cluster:
        cluster.start_head(num_cpus=1, dashboard=True)
        cluster.add_node(num_cpus=3, isolated=True, keep=[site])
        cluster.wait_for_nodes(2)
        [isolated] = cluster.isolated_node_ids()
        cluster.wait_for_dashboard()
        runs = {}
        for how in ("cli", "job"):
            runs[how] = storage.join(s3_bucket, how)
            config = {
                "run_dir": runs[how],
                "envs": {
                    "treasure": {"rooms": 5, "n_train": 4},
                    "my_game": {"rooms": 3, "n_train": 4},
                },
                "collect": {"families": families, "rollout": {"num_env_pools": 2}},
            }
            (folder / f"{how}.yaml").write_text(yaml.safe_dump(config))
        # the CLI from the module's folder, driving the cluster
        cli = _agentray(
            ["--address", cluster.address, "collect", "cli.yaml"], folder, site, **cluster.env
        )
        assert cli.returncode == 0, cli.stderr[-4000:]
        # a Ray job whose working dir is that folder
        submit = [str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard_url]
        submit += ["--working-dir", str(folder), "--", "python", "-m", "jobs", "collect"]
        submit += ["--config", "job.yaml"]
        job = subprocess.run(
            submit, cwd=tmp_path, env=cluster.env, capture_output=True, text=True, timeout=900
        )
        assert job.returncode == 0, (job.stdout + job.stderr)[-4000:]
    for how, run in runs.items():
        rows = _rows(storage.join(run, "collect", "trajectories"))
        expected = [f"{family}_{i}" for family in ("my_game", "treasure") for i in range(4)]
        assert [r.id for r in rows] == expected, how
        assert all(r.reward == 1.0 and r.status == "completed" for r in rows), how
        manifest = storage.read_json(storage.join(run, "collect", "manifest.json"))
        assert isolated in manifest["counts"]["env_pool_nodes_at_start"], how
