"""The collect tests' storage: each test that takes ``location`` runs on a local folder and
on a fresh bucket of the session's real S3 server."""

from __future__ import annotations

from collections import Counter

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from agentray import storage


@pytest.fixture(params=["local", "s3"])
def location(request, tmp_path) -> str:
    """Where the test writes: a local folder or ``s3://<fresh bucket>/run``."""
    if request.param == "local":
        return str(tmp_path / "run")
    return storage.join(request.getfixturevalue("s3_bucket"), "run")


def _all_files(location: str) -> list[str]:
    fs, path = storage.filesystem(location)
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    return sorted(
        info.path[len(path) :].lstrip("/")
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File
    )


@pytest.fixture
def all_files():
    """``all_files(location)``: every file under it, relative, hidden and temporary ones
    included (``storage.list_files`` leaves those out)."""
    return _all_files


def _row_ids(out_dir: str) -> Counter:
    ids: Counter = Counter()
    for shard in storage.list_files(out_dir, ".parquet"):
        fs, path = storage.filesystem(shard)
        ids.update(pq.read_table(path, filesystem=fs, columns=["id"]).column("id").to_pylist())
    return ids


@pytest.fixture
def row_ids():
    """``row_ids(out_dir)``: how many rows of the folder's shards carry each id, counted
    row by row (``read_trajectories`` keeps one row per id, so it cannot show a double)."""
    return _row_ids
