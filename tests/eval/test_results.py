"""A general suite's results on a local disk (appended item by item) and on an object store
(which cannot append: a whole object per batch, one object once the suite finished)."""

from __future__ import annotations

import json
from pathlib import Path

from agentray import storage
from agentray.eval.general.results import ResultsWriter, parts_of, read_results


def row(i: int, status: str = "correct") -> dict:
    return {"id": f"s_{i}", "suite": "s", "score": float(status == "correct"), "status": status}


def test_results_survive_a_kill_and_resume_into_one_file(run_root):
    location = storage.join(run_root, "eval", "general", "s.jsonl")
    on_store = storage.is_uri(location)
    # a run that kept a failed request from before, then asked it again
    writer = ResultsWriter(location, [row(0, "request_error")], flush_every=2)
    for i in range(5):
        writer.add(row(i))
    # killed without close: the store lost the batch it had not written (row 4), the local
    # file nothing; the later row of s_0 wins, in first-seen order
    assert read_results(location) == [row(i) for i in range(4 if on_store else 5)]
    assert len(storage.list_files(parts_of(location))) == (2 if on_store else 0)

    kept = read_results(location)[:3]
    writer = ResultsWriter(location, kept, flush_every=2)
    # what the run keeps replaces what was stored, at once
    assert read_results(location) == kept
    writer.add(row(3, "wrong"))
    writer.close()
    assert read_results(location) == [*kept, row(3, "wrong")]
    assert storage.list_files(storage.join(run_root, "eval")) == [location]
    assert list(Path.cwd().iterdir()) == []


def test_an_unfinished_run_stores_what_it_buffered(run_root):
    location = storage.join(run_root, "s.jsonl")
    writer = ResultsWriter(location, [], flush_every=10)
    writer.add(row(0))
    writer.close(finished=False)  # e.g. the endpoint failed mid-suite
    assert read_results(location) == [row(0)]
    parts = storage.list_files(parts_of(location))
    assert [storage.name(p) for p in parts] == (
        ["000000.jsonl"] if storage.is_uri(location) else []
    )


def test_parts_a_killed_cleanup_left_behind_sort_before_new_ones(s3_bucket, monkeypatch):
    location = storage.join(s3_bucket, "s.jsonl")
    stale = storage.join(parts_of(location), "000004.jsonl")
    storage.write_text(stale, json.dumps(row(0, "request_error")) + "\n")
    monkeypatch.setattr(storage, "remove", lambda location: None)  # killed while removing
    writer = ResultsWriter(location, [], flush_every=1)
    writer.add(row(0))
    assert read_results(location) == [row(0)]
