"""The storage layer on local disk and on a real S3 server (SeaweedFS)."""

from __future__ import annotations

import pytest

from agentray import storage


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "run")
    return storage.join(request.getfixturevalue("s3_bucket"), "run")


def test_write_read_list_remove(root):
    storage.write_json(storage.join(root, "a", "m.json"), {"x": 1})
    storage.write_text(storage.join(root, "b.txt"), "hello")
    storage.write_text(storage.join(root, "_SUCCESS"), "")
    assert storage.read_json(storage.join(root, "a", "m.json")) == {"x": 1}
    assert storage.is_dir(storage.join(root, "a"))
    assert not storage.exists(storage.join(root, "missing"))
    assert storage.list_files(root) == [
        storage.join(root, "a", "m.json"),
        storage.join(root, "b.txt"),
    ]
    assert storage.list_files(root, ".json") == [storage.join(root, "a", "m.json")]
    storage.remove(storage.join(root, "a"))
    assert storage.list_files(root, ".json") == []
    assert storage.list_files(storage.join(root, "nothing-here")) == []


def test_staged_dir_replaces_on_success_and_keeps_old_on_error(root, tmp_path):
    target = storage.join(root, "model")
    with storage.staged_dir(target) as tmp:
        (tmp / "old.bin").write_bytes(b"1")
    with pytest.raises(RuntimeError), storage.staged_dir(target) as tmp:
        (tmp / "half.bin").write_bytes(b"2")
        raise RuntimeError("writer failed")
    assert storage.list_files(target) == [storage.join(target, "old.bin")]
    with storage.staged_dir(target) as tmp:
        (tmp / "sub").mkdir()
        (tmp / "sub" / "new.bin").write_bytes(b"3")
    assert storage.list_files(target) == [storage.join(target, "sub", "new.bin")]


def test_local_copy_downloads_once_and_again_after_a_change(s3_bucket, tmp_path):
    model = storage.join(s3_bucket, "model")
    storage.write_text(storage.join(model, "config.json"), "{}")
    cache = tmp_path / "cache"
    first = storage.local_copy(model, cache)
    assert (first / "config.json").read_text() == "{}"
    (first / "marker").write_text("same copy")
    assert storage.local_copy(model, cache) == first
    storage.write_text(storage.join(model, "config.json"), '{"changed": true}')
    changed = storage.local_copy(model, cache)
    assert changed != first and (changed / "config.json").read_text() == '{"changed": true}'
    with pytest.raises(FileNotFoundError, match="nothing stored"):
        storage.local_copy(storage.join(s3_bucket, "absent"), cache)


def test_uri_paths_never_become_local_folders(s3_bucket, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage.makedirs(storage.join(s3_bucket, "x"))
    storage.write_text(storage.join(s3_bucket, "x", "y.txt"), "y")
    assert list(tmp_path.iterdir()) == []
    assert storage.absolute("rel/dir") == str(tmp_path / "rel" / "dir")
    assert storage.absolute(s3_bucket + "/x/") == s3_bucket + "/x"


def test_local_path_caches_a_file_or_a_folder(s3_bucket, tmp_path):
    data = storage.join(s3_bucket, "data")
    storage.write_text(storage.join(data, "a.jsonl"), "1\n")
    cache = tmp_path / "cache"
    file = storage.local_path(storage.join(data, "a.jsonl"), cache)
    assert file.name == "a.jsonl" and file.read_text() == "1\n"
    assert storage.local_path(storage.join(data, "a.jsonl"), cache) == file
    storage.write_text(storage.join(data, "a.jsonl"), "1\n2\n")
    changed = storage.local_path(storage.join(data, "a.jsonl"), cache)
    assert changed != file and changed.read_text() == "1\n2\n"
    assert (storage.local_path(data, cache) / "a.jsonl").read_text() == "1\n2\n"
    assert storage.local_path(str(tmp_path)) == tmp_path
    with pytest.raises(FileNotFoundError, match="nothing stored"):
        storage.local_path(storage.join(data, "absent.jsonl"), cache)


def test_the_test_s3_server_gives_every_test_of_a_suite_its_own_bucket(s3_server):
    """SeaweedFS grows 7 volumes per new bucket; sized by free disk it ran out after ~35
    buckets on CI, and later tests' first writes failed with INTERNAL_FAILURE."""
    buckets = [s3_server.create_bucket(f"many-buckets-{i}") for i in range(60)]
    storage.write_bytes(f"{buckets[-1]}/x", b"written")
    assert storage.read_bytes(f"{buckets[-1]}/x") == b"written"
