"""Loud failures: the typed error a stage ends with when it cannot do its work, and the
running log of infrastructure errors (a task_error episode, a request_error item) that
prints one stderr line per error as it happens, at most one a second.

``StageFailed`` carries one line (what failed, counts, the most common error) and the
stage's result where it got that far; the CLI and ``python -m jobs`` print the result,
then the line in red, and exit 1.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

ERROR_LINE_INTERVAL_S = 1.0  # at most one error line a second; the rest are counted
_ERROR_CHARS = 240


class StageFailed(RuntimeError):
    """A stage could not do its work. ``str(e)`` is one line; ``result`` is what the stage
    returns normally (summary or scores), where it got that far (outputs and manifest are
    written then)."""

    def __init__(self, line: str, result: dict[str, Any] | None = None) -> None:
        super().__init__(one_line(line, limit=2000))
        self.result = result


class EndpointUnavailable(StageFailed):
    """The policy's endpoint failed its preflight check (nothing was run)."""

    def __init__(self, url: str, error: str, role: str = "policy") -> None:
        super().__init__(f"{role} endpoint {url} is not usable: {error}")
        self.url = url
        self.error = error


def failure_line(stage: str, error: StageFailed) -> str:
    """The one line a command ends with: ``<stage>: <what failed>`` (once)."""
    text = str(error)
    return text if text.startswith(f"{stage} ") else f"{stage}: {text}"


def one_line(text: str, limit: int = _ERROR_CHARS) -> str:
    """``text`` on one line (whitespace runs become one space), cut to ``limit`` chars."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class ErrorLog:
    """Infrastructure errors of one stage run, printed to stderr as they happen.

    ``add(what, error)`` prints ``<stage>: <what>: <error>`` unless a line went out less
    than ``interval_s`` ago; those are counted and the next line (or ``close``) says how
    many were not shown. It also tallies the errors for the end-of-run summary.
    """

    def __init__(
        self,
        stage: str,
        interval_s: float = ERROR_LINE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        write: Callable[[str], None] | None = None,
    ) -> None:
        self.stage = stage
        self.interval_s = interval_s
        self._clock = clock
        self._write = write or _to_stderr
        self._last: float | None = None
        self.suppressed = 0  # errors not shown since the last line
        self.lines = 0
        self.tally: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.tally.values())

    def add(self, what: str, error: str | None) -> None:
        text = one_line(error or "(no error message)")
        self.tally[text] += 1
        now = self._clock()
        if self._last is not None and now - self._last < self.interval_s:
            self.suppressed += 1
            return
        more = f" (+{self.suppressed} more not shown)" if self.suppressed else ""
        self._emit(f"{self.stage}: {what}: {text}{more}")
        self._last = now
        self.suppressed = 0

    def close(self) -> None:
        """Say how many errors since the last line were not shown."""
        if self.suppressed:
            self._emit(f"{self.stage}: +{self.suppressed} more errors not shown")
            self.suppressed = 0

    def most_common(self) -> tuple[str, int] | None:
        """The most frequent error text and its count (None: no errors)."""
        top = self.tally.most_common(1)
        return top[0] if top else None

    def _emit(self, line: str) -> None:
        self.lines += 1
        self._write(line)


def _to_stderr(line: str) -> None:
    # tqdm.write keeps a running progress bar intact; sys.stderr is looked up now, so a
    # caller that swapped it (a test runner, a CLI wrapper) gets the line
    tqdm.write(line, file=sys.stderr)


def error_failure(
    errors: int,
    total: int,
    max_fraction: float,
    log: ErrorLog | None = None,
) -> dict[str, Any] | None:
    """The failure record of a run where more than ``max_fraction`` of ``total`` ended in
    infrastructure errors (None: it did not): counts, the threshold, the most common error."""
    if total == 0 or errors / total <= max_fraction:
        return None
    common = log.most_common() if log is not None else None
    return {
        "errors": errors,
        "total": total,
        "max_error_fraction": max_fraction,
        "most_common_error": common[0] if common else None,
        "most_common_error_count": common[1] if common else 0,
    }


def common_error_text(failure: dict[str, Any]) -> str:
    if not failure.get("most_common_error"):
        return ""
    return f"; most common error ({failure['most_common_error_count']}x): " + str(
        failure["most_common_error"]
    )
