"""The eval tests' storage: each test that takes ``run_root`` runs twice, once on the local
disk and once in a fresh bucket of the session's S3 server, from an empty working directory
that must stay empty (a bug that took the URI for a local path would leave ``s3:/...``
there)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["local", "s3"])
def run_root(request, tmp_path, monkeypatch) -> str:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    if request.param == "local":
        return str(tmp_path / "runs")
    return request.getfixturevalue("s3_bucket")
