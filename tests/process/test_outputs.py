"""The process stage's inputs and outputs on any storage: a local folder or a bucket."""

from __future__ import annotations

import json

import pytest

from agentray import storage
from agentray.process.agentinstruct import load_agentinstruct

TURNS = [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]


def _base(where: str, tmp_path, request) -> str:
    return str(tmp_path / "run") if where == "local" else request.getfixturevalue("s3_bucket")


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_rerun_replaces_the_train_set_as_a_whole(where, tmp_path, request):
    import ray

    from agentray.process.writers import write_parquet as _write_parquet

    process = storage.join(_base(where, tmp_path, request), "process")
    train = storage.join(process, "train")
    _write_parquet(ray.data.range(10).repartition(5), train)
    _write_parquet(ray.data.range(3).repartition(1), train)
    assert sorted(ray.data.read_parquet(train).to_pandas()["id"]) == [0, 1, 2]
    assert len(storage.list_files(train, ".parquet")) == 1
    if where == "local":  # no temporary sibling left behind
        assert [p.name for p in (tmp_path / "run" / "process").iterdir()] == ["train"]


@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("where", ["local", "s3"])
def test_an_unfinished_run_leaves_no_manifest(where, tmp_path, request, tiny_model_dir):
    from agentray.process import ProcessConfig, run_process
    from agentray.process.run import ProcessError

    run_dir = _base(where, tmp_path, request)
    manifest = storage.join(run_dir, "process", "manifest.json")
    storage.write_json(manifest, {"stage": "process", "from": "an earlier run"})
    with pytest.raises(ProcessError, match="trajectory folders not found"):
        run_process(ProcessConfig(model=tiny_model_dir), run_dir)
    assert not storage.exists(manifest)
    # the tokenizer, saved before any work, went where the run is
    assert storage.exists(storage.join(run_dir, "process", "tokenizer", "tokenizer_config.json"))


def test_agentinstruct_reads_a_folder_or_a_file_in_a_bucket(s3_bucket, tmp_path):
    import datasets

    local = tmp_path / "public"
    local.mkdir()
    (local / "os.jsonl").write_text(json.dumps({"id": "os_0", "conversations": TURNS}))
    datasets.Dataset.from_list([{"id": "db_0", "conversations": TURNS}]).to_parquet(
        str(local / "db.parquet")
    )
    folder = storage.join(s3_bucket, "public")
    storage.upload_dir(local, folder)

    def ids(paths: list[str]) -> list[str]:
        rows, bad = load_agentinstruct(paths)
        assert bad == []
        return sorted(json.loads(row["record"])["id"] for row in rows)

    assert ids([folder]) == ["db_0", "os_0"]
    assert ids([storage.join(folder, "os.jsonl")]) == ["os_0"]
    missing = storage.join(s3_bucket, "absent")
    with pytest.raises(FileNotFoundError, match=f"AgentInstruct data not found: {missing}"):
        load_agentinstruct([missing])
