"""Loud failures: infrastructure errors print one line each as they happen, at most one a
second, and every error is counted (shown or not)."""

from __future__ import annotations

import io
import re
import sys

from agentray.failures import ErrorLog, StageFailed, error_failure, failure_line


def test_error_lines_are_rate_limited_and_count_the_ones_they_hide():
    now = [0.0]
    lines: list[str] = []
    log = ErrorLog("collect", interval_s=1.0, clock=lambda: now[0], write=lines.append)
    # ten errors 0.3 s apart: lines at t=0, 1.2, 2.4 (the first second's three are hidden)
    for i in range(10):
        log.add(f"task_error db_{i}", "APIConnectionError: Connection error.\n  at line 2")
        now[0] += 0.3
    log.close()
    assert lines == [
        "collect: task_error db_0: APIConnectionError: Connection error. at line 2",
        "collect: task_error db_4: APIConnectionError: Connection error. at line 2 "
        "(+3 more not shown)",
        "collect: task_error db_8: APIConnectionError: Connection error. at line 2 "
        "(+3 more not shown)",
        "collect: +1 more errors not shown",
    ]
    hidden = sum(int(n) for line in lines for n in re.findall(r"\+(\d+) more", line))
    assert log.lines == 4 and log.total == 10 == 3 + hidden
    assert log.most_common() == ("APIConnectionError: Connection error. at line 2", 10)


def test_error_lines_go_to_the_stderr_of_the_moment(monkeypatch):
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    log = ErrorLog("eval")
    log.add("request_error mmlu_3", "BadRequestError: 400")
    log.add("request_error mmlu_4", "BadRequestError: 400")  # within the second: hidden
    log.close()
    assert stderr.getvalue().splitlines() == [
        "eval: request_error mmlu_3: BadRequestError: 400",
        "eval: +1 more errors not shown",
    ]


def test_a_run_fails_only_past_its_error_fraction():
    log = ErrorLog("collect", write=lambda _: None)
    for _ in range(3):
        log.add("task_error", "boom")
    assert error_failure(3, 6, 0.5, log) is None  # half is not "mostly"
    assert error_failure(4, 6, 0.5, log) == {
        "errors": 4,
        "total": 6,
        "max_error_fraction": 0.5,
        "most_common_error": "boom",
        "most_common_error_count": 3,
    }
    assert error_failure(6, 6, 1.0, log) is None and error_failure(0, 0, 0.0, log) is None
    assert error_failure(1, 6, 0.0, log) is not None
    failed = StageFailed("collect FAILED: 4 of 6\nepisodes")
    assert failure_line("collect", failed) == "collect FAILED: 4 of 6 episodes"
    assert failure_line("eval", StageFailed("policy endpoint x")) == "eval: policy endpoint x"
