"""What the process stage shows: one progress bar over its steps (live on a terminal, gone
when the stage ends) and a summary table at the end, on stderr.

Ray Data's own progress bars and per-dataset INFO lines (hundreds of lines for one run)
are off on the console while the stage runs, unless ``process.ray_data_progress``; Ray
Data still writes them to ``ray-data.log`` in the Ray session's log folder.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

STEPS = (
    "reading inputs",
    "reading general data",
    "filtering agent records",
    "tokenizing",
    "mixing",
    "writing the training set",
    "writing records and the data card",
)
_REASONS_SHOWN = 8
_FILES_SHOWN = 5


class StageConsole:
    """``with StageConsole(show, ray_data_progress) as console: console.step(name) ...``;
    ``console.summary(stats, out)`` prints the table."""

    def __init__(self, show: bool = True, ray_data_progress: bool = False) -> None:
        self.show = show
        self.ray_data_progress = ray_data_progress
        self.console = Console(stderr=True)
        self.started = time.monotonic()
        self._progress: Progress | None = None
        self._task = None
        self._restore: list[Callable[[], None]] = []
        # seconds per step, in order (the benchmark prints where the time goes)
        self.step_seconds: dict[str, float] = {}
        self._current = (STEPS[0], time.perf_counter())

    def __enter__(self) -> StageConsole:
        if not self.ray_data_progress:
            self._quiet_ray_data()
        if self.show and self.console.is_terminal:  # elsewhere it would only print a blank line
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("process: {task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,  # the summary table takes its place
            )
            self._progress.start()
            self._task = self._progress.add_task(STEPS[0], total=len(STEPS))
        return self

    def step(self, name: str) -> None:
        """Marks the steps before ``name`` done and shows ``name`` as running."""
        self._end_step()
        self._current = (name, time.perf_counter())
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=name, completed=STEPS.index(name))

    def _end_step(self) -> None:
        name, since = self._current
        self.step_seconds[name] = self.step_seconds.get(name, 0.0) + time.perf_counter() - since

    def __exit__(self, *exc: object) -> None:
        self._end_step()
        if self._progress is not None:
            self._progress.stop()
        for undo in reversed(self._restore):
            undo()
        self._restore.clear()

    def _quiet_ray_data(self) -> None:
        """Progress bars off in the driver's DataContext (it travels to the workers) and
        Ray Data's console handler at WARNING (its file handler keeps every line)."""
        import ray.data
        from ray.util.debug import log_once

        # taken up front: Ray Data's hint on how to turn the bars back on (logged once)
        log_once("ray_data_progress_manager_disabled")
        context = ray.data.DataContext.get_current()
        shown = context.enable_progress_bars
        self._restore.append(lambda: setattr(context, "enable_progress_bars", shown))
        context.enable_progress_bars = False
        for handler in logging.getLogger("ray.data").handlers:
            if isinstance(handler, logging.StreamHandler):  # the console, not the log file
                self._restore.append(partial(handler.setLevel, handler.level))
                handler.setLevel(max(handler.level, logging.WARNING))

    def summary(self, stats: dict[str, Any]) -> None:
        if self.show:
            self.console.print(summary_table(stats, time.monotonic() - self.started))
            for line in summary_notes(stats):
                self.console.print(line, style="yellow", soft_wrap=True)


def summary_table(stats: dict[str, Any], elapsed_s: float) -> Table:
    """The run in a few rows: what was read, kept, mixed and set aside, and why."""
    table = Table(
        title=f"process: done in {elapsed_s:.0f}s",
        title_justify="left",
        caption="all counts: manifest.json; set aside: rejected.jsonl",
        caption_justify="left",
    )
    table.add_column("", style="bold", no_wrap=True, overflow="ellipsis", max_width=52)
    table.add_column("count", justify="right", no_wrap=True, overflow="ellipsis")
    kept = stats["agent_kept_by_family"]
    table.add_row("agent records read", str(sum(stats["agent_read_by_origin"].values())))
    table.add_row("agent records kept", str(sum(kept.values())))
    table.add_row("  by family", _pairs(kept), style="dim")
    table.add_row("training examples: agent", str(stats["agent_records"]))
    table.add_row("training examples: general", str(stats["general_records"]))
    eta = stats["eta_realized"]
    table.add_row("agent share (eta)", "n/a" if eta is None else f"{eta:.3f}")
    table.add_row("tokens (with loss)", f"{stats['tokens']} ({stats['loss_tokens']})")
    if stats.get("packing"):
        packing = stats["packing"]
        table.add_row("packs (real tokens)", f"{packing['packs']} ({packing['efficiency']:.1%})")
    table.add_row("set aside", str(stats["rejected"]), end_section=True)
    reasons = list(stats["rejected_by_reason"].items())
    for reason, n in reasons[:_REASONS_SHOWN]:
        table.add_row(f"  {reason}", str(n), style="dim")
    if len(reasons) > _REASONS_SHOWN:
        rest = sum(n for _, n in reasons[_REASONS_SHOWN:])
        table.add_row(f"  {len(reasons) - _REASONS_SHOWN} other reasons", str(rest), style="dim")
    return table


def summary_notes(stats: dict[str, Any]) -> list[str]:
    """Lines under the table: the files set aside whole, and the mix's notes."""
    files = stats.get("unreadable_files", [])
    lines = [f"set aside, unreadable: {file}" for file in files[:_FILES_SHOWN]]
    if len(files) > _FILES_SHOWN:
        lines.append(f"set aside, unreadable: {len(files) - _FILES_SHOWN} more (rejected.jsonl)")
    return lines + [f"note: {note}" for note in stats["mix_notes"]]


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items())
