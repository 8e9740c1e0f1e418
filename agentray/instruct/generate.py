"""The instruct stage: a teacher writes new tasks, the real envs verify them.

Per family, in waves of concurrent requests: each request shows the teacher
``seeds_per_prompt`` of the family's procedural train tasks (question, solution, check)
and asks for ``proposals_per_request`` new ones (self-instruct), or, for a share of the
requests, new tasks over one seed's own table (task derivation). Each proposal then goes
through, in order:

1. parsing (``malformed_json``, ``malformed_reply``, ``not_an_object``);
2. verification in the real env by the family's ``task_from_proposal`` (missing fields, SQL
   errors, checks that fail, or pass without the solution, ...), in parallel threads;
3. in request order: duplicates and near-duplicates (ROUGE-L) of the family's existing
   tasks, train and test (the seeds among them), and of the tasks kept before it
   (``duplicate``, ``near_duplicate``); then ``surplus`` once the family has the tasks it
   wanted.

So a proposal is rejected for the first problem found: an invalid one for its invalidity,
a valid one for repeating a known task.

Kept tasks go to ``<out>/tasks/<family>.jsonl`` (TaskSpec lines, split train, ids
``<family>_gen_<n>``); every other proposal to ``<out>/rejected.jsonl`` with its reason.
A failed request (after the teacher client's retries) and a reply without any proposal
count as one rejected proposal each, so proposals = kept + rejected always holds. A rerun
over the same output continues: kept tasks count, ids and request numbers go on.

``<out>`` is a local path or a URI (``s3://...``). Object stores cannot append, so after
each wave of requests a file that got new lines is written again whole, all-or-nothing
(``JsonlFile``): a killed run leaves each file as it was after some earlier wave, never a
half line, and a rerun resumes from there. The files hold at most a few thousand lines
(``tasks_per_family`` kept tasks and their rejected proposals), so the rewrites stay small.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import math
import random
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from tqdm.auto import tqdm

from agentray import storage
from agentray.envs.config import EnvsConfig, family_config_dicts
from agentray.envs.proposals import DUPLICATE, NEAR_DUPLICATE, SURPLUS, TEACHER_ERROR, Rejected
from agentray.envs.registry import make_env
from agentray.envs.sandbox import SandboxUnavailable
from agentray.envs.task_files import file_tasks
from agentray.failures import ErrorLog, StageFailed, common_error_text, error_failure
from agentray.instruct.config import DERIVABLE_FAMILIES, INSTRUCT_FAMILIES, InstructConfig
from agentray.instruct.dedup import NearDuplicateIndex
from agentray.instruct.prompts import (
    DERIVE,
    SELF_INSTRUCT,
    derive_messages,
    parse_reply,
    self_instruct_messages,
)
from agentray.manifest import write_manifest
from agentray.policies.base import Policy
from agentray.policies.openai import resolve_api_key
from agentray.policies.preflight import check_endpoint
from agentray.policies.registry import make_policy
from agentray.types import Message, TaskSpec

# What a derived task shares with its seed, per family.
DERIVED_FIELDS = {"db": ("table", "columns", "rows")}


class InstructError(RuntimeError):
    """The run cannot start: no API key, the env cannot run here, bad task files, or a
    verifier that rejects the family's own tasks."""


def instruct_dir(cfg: InstructConfig, run_dir: str) -> str:
    """``cfg.output`` or ``<run_dir>/instruct``, absolute (a path or URI)."""
    if cfg.output:
        return storage.absolute(cfg.output)
    return storage.join(storage.absolute(run_dir), "instruct")


class JsonlFile:
    """A JSONL file that grows by whole rewrites (object stores cannot append): ``extend``
    writes every line again, all-or-nothing. Starts from the lines already stored."""

    def __init__(self, location: str) -> None:
        self.location = location
        text = storage.read_text(location) if storage.exists(location) else ""
        self.lines = [line for line in text.split("\n") if line.strip()]

    def extend(self, lines: list[str]) -> None:
        if lines:
            self.lines += lines
            storage.write_text(self.location, "".join(line + "\n" for line in self.lines))

    def rows(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


@dataclass
class Request:
    family: str
    number: int
    mode: str
    seeds: list[str]
    messages: list[Message]
    derived_from: dict[str, Any] | None = None


@dataclass
class Candidate:
    request: Request
    index: int  # within the reply
    raw: str
    value: Any = None
    outcome: TaskSpec | Rejected | None = None


class FamilyRun:
    """One family's seeds, known instructions, output file and counts."""

    def __init__(
        self,
        family: str,
        cfg: InstructConfig,
        out: str,
        family_config: dict[str, Any],
        rejected: JsonlFile,
    ) -> None:
        self.family, self.cfg, self.out = family, cfg, out
        self.family_config = family_config
        self.module: ModuleType = importlib.import_module(INSTRUCT_FAMILIES[family])
        self.task_file = storage.join(out, "tasks", f"{family}.jsonl")
        self.tasks_out = JsonlFile(self.task_file)
        self.rejected_out = rejected
        self.counts: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        env = make_env(self.family, self._family_config())
        self.env_config = env.config
        existing = env.tasks("train") + env.tasks("test")
        procedural = re.compile(rf"{re.escape(self.family)}_\d+")
        self.seeds = [t for t in env.tasks("train") if procedural.fullmatch(t.id)]
        if not self.seeds:
            raise ValueError(f"{self.family}: no train tasks to draw seed examples from")
        self.known = NearDuplicateIndex(self.cfg.near_duplicate_threshold)
        for task in existing:
            self.known.add(task.id, self.module.instruction_of(task.payload))
        self.resumed = self._resume()
        self.kept = len(self.resumed)
        self._self_test()

    def _family_config(self) -> dict[str, Any]:
        """The family's settings, without this run's own output among its task files (a
        rerun reads that file as its own progress, not as existing tasks)."""
        config = dict(self.family_config)
        files = [f for f in config.get("task_files", []) if storage.absolute(f) != self.task_file]
        if "task_files" in config:
            config["task_files"] = files
        return config

    def _resume(self) -> list[TaskSpec]:
        """The tasks kept by earlier runs; ids and request numbers go on after theirs (and
        after the requests whose proposals were all rejected)."""
        tasks = file_tasks(self.family, [self.task_file], "train") if self.tasks_out.lines else []
        numbers = [int(m.group(1)) for t in tasks if (m := re.search(r"_(\d+)$", t.id))]
        requests = [t.payload.get("origin", {}).get("request", -1) for t in tasks]
        requests += [
            r["request"] for r in self.rejected_out.rows() if r.get("family") == self.family
        ]
        self.next_id = max(numbers, default=-1) + 1
        self.next_request = max(requests, default=-1) + 1
        for task in tasks:
            self.known.add(task.id, self.module.instruction_of(task.payload))
        return tasks

    def _self_test(self) -> None:
        """The verifier must accept one of the family's own tasks (this also fails early,
        with the host's error, where the env cannot run at all, e.g. without bwrap)."""
        seed = self.seeds[0]
        verdict = self.module.task_from_proposal(
            self.module.proposal_from_task(seed), seed.id, self.env_config
        )
        if isinstance(verdict, Rejected):
            raise InstructError(
                f"{self.family}: the verifier rejects the family's own task {seed.id} "
                f"({verdict}); check envs.{self.family}"
            )

    @property
    def max_requests(self) -> int:
        need = math.ceil(self.cfg.tasks_per_family / self.cfg.proposals_per_request)
        return self.cfg.max_requests_per_family or 4 * need

    @property
    def wanted_more(self) -> int:
        return max(self.cfg.tasks_per_family - self.kept, 0)

    def next_wave(self, concurrency: int) -> list[Request]:
        needed = math.ceil(self.wanted_more / self.cfg.proposals_per_request)
        left = self.max_requests - self.counts["requests"]
        return [self._request() for _ in range(max(min(needed, concurrency, left), 0))]

    def _request(self) -> Request:
        number = self.next_request
        self.next_request += 1
        self.counts["requests"] += 1
        rng = random.Random(f"{self.cfg.seed}:{self.family}:{number}")
        seeds = rng.sample(self.seeds, min(self.cfg.seeds_per_prompt, len(self.seeds)))
        examples = [self.module.proposal_from_task(t) for t in seeds]
        n = self.cfg.proposals_per_request
        guide = self.module.PROPOSAL_GUIDE
        derive = self.family in DERIVABLE_FAMILIES and rng.random() < self.cfg.derive_share
        if derive:
            source = {k: seeds[0].payload[k] for k in DERIVED_FIELDS[self.family]}
            messages = derive_messages(self.family, guide, source, examples, n)
            return Request(self.family, number, DERIVE, [t.id for t in seeds], messages, source)
        messages = self_instruct_messages(self.family, guide, examples, n)
        return Request(self.family, number, SELF_INSTRUCT, [t.id for t in seeds], messages)

    def candidates(self, request: Request, text: str) -> list[Candidate]:
        out = []
        for i, block in enumerate(parse_reply(text)):
            value = block.value
            if request.derived_from is not None and isinstance(value, dict):
                value = {**value, **request.derived_from}
            out.append(Candidate(request, i, block.raw, value, block.error))
        return out

    def verify(self, candidate: Candidate) -> TaskSpec | Rejected:
        """The family's verdict in the real env (thread-safe: it reads no run state)."""
        if candidate.outcome is not None:  # it did not parse
            return candidate.outcome
        return self.module.task_from_proposal(candidate.value, "", self.env_config)

    def _duplicate(self, text: str) -> Rejected | None:
        hit = self.known.closest(text)
        if hit is None:
            return None
        key, score = hit
        if score >= 1.0:
            return Rejected(DUPLICATE, f"the same instruction as {key}")
        return Rejected(NEAR_DUPLICATE, f"of {key} (ROUGE-L {score:.2f})")

    def settle(self, candidates: list[Candidate]) -> tuple[list[TaskSpec], list[dict]]:
        """Keep or reject each verified candidate, in order; returns (kept, rejected rows)."""
        kept: list[TaskSpec] = []
        rejected: list[dict] = []
        for c in candidates:
            outcome = c.outcome
            if isinstance(outcome, TaskSpec):
                outcome = self._duplicate(self.module.instruction_of(outcome.payload)) or outcome
            if isinstance(outcome, TaskSpec) and self.wanted_more == 0:
                outcome = Rejected(SURPLUS, f"{self.family} has its {self.kept} tasks already")
            self.counts["proposals"] += 1
            if isinstance(outcome, TaskSpec):
                task = self._keep(outcome, c)
                kept.append(task)
            else:
                assert outcome is not None
                self.rejected[outcome.code] += 1
                rejected.append(_rejected_row(c, outcome))
        return kept, rejected

    def _keep(self, task: TaskSpec, c: Candidate) -> TaskSpec:
        task_id = f"{self.family}_gen_{self.next_id}"
        self.next_id += 1
        self.kept += 1
        self.counts["kept"] += 1
        payload = dict(task.payload)
        payload["origin"] = {
            "teacher": self.cfg.teacher.model,
            "mode": c.request.mode,
            "request": c.request.number,
            "seeds": c.request.seeds,
        }
        task = task.model_copy(update={"id": task_id, "seed": c.request.number, "payload": payload})
        self.known.add(task_id, self.module.instruction_of(payload))
        return task

    def failed_request(self, request: Request, error: str) -> dict:
        self.counts["requests_failed"] += 1
        self.counts["proposals"] += 1
        self.rejected[TEACHER_ERROR] += 1
        candidate = Candidate(request, 0, "")
        return _rejected_row(candidate, Rejected(TEACHER_ERROR, error))

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.counts["requests"],
            "requests_failed": self.counts["requests_failed"],
            "proposals": self.counts["proposals"],
            "kept": self.counts["kept"],
            "rejected": sum(self.rejected.values()),
            "rejected_by_reason": dict(sorted(self.rejected.items())),
            "resumed": len(self.resumed),
            "tasks_in_file": self.kept,
            "task_file": self.task_file,
        }


def _rejected_row(c: Candidate, rejected: Rejected) -> dict[str, Any]:
    return {
        "family": c.request.family,
        "request": c.request.number,
        "proposal_index": c.index,
        "mode": c.request.mode,
        "seeds": c.request.seeds,
        "reason": rejected.code,
        "detail": rejected.detail,
        "proposal": c.raw,
    }


# -------------------------------------------------------------------------------- the run


async def _run_family(
    run: FamilyRun,
    teacher: Policy,
    cfg: InstructConfig,
    pool: ThreadPoolExecutor,
    bar: tqdm,
    totals: Counter[str],
    errors: ErrorLog,
) -> None:
    loop = asyncio.get_running_loop()
    while requests := run.next_wave(cfg.teacher.max_concurrency):
        replies = await teacher.generate([r.messages for r in requests], cfg.teacher.params)
        candidates: list[Candidate] = []
        failures: list[dict] = []
        for request, reply in zip(requests, replies, strict=True):
            if reply.finish_reason in ("error", "context_limit"):
                failures.append(run.failed_request(request, reply.error or reply.finish_reason))
                totals["teacher_errors"] += 1
                errors.add(f"teacher_error {run.family} request {request.number}", reply.error)
            else:
                candidates += run.candidates(request, reply.text)
        verdicts = await asyncio.gather(
            *(loop.run_in_executor(pool, run.verify, c) for c in candidates)
        )
        for candidate, verdict in zip(candidates, verdicts, strict=True):
            candidate.outcome = verdict
        kept, rejected = run.settle(candidates)
        run.tasks_out.extend([t.model_dump_json() for t in kept])
        run.rejected_out.extend([json.dumps(row, default=str) for row in failures + rejected])
        totals["rejected"] += len(failures) + len(rejected)
        totals["requests"] += len(requests)
        bar.update(len(kept))
        bar.set_postfix(requests=totals["requests"], rejected=totals["rejected"])


async def _run_all(
    runs: list[FamilyRun], cfg: InstructConfig, progress: bool, errors: ErrorLog
) -> tuple[dict, Counter[str]]:
    """The teacher's stats and the run's totals (requests, teacher_errors, rejected)."""
    teacher = make_policy(cfg.teacher)
    total = cfg.tasks_per_family * len(runs)
    initial = sum(min(run.kept, cfg.tasks_per_family) for run in runs)
    bar = tqdm(
        total=total, initial=initial, desc="verified tasks", unit="task", disable=not progress
    )
    totals: Counter[str] = Counter()
    try:
        with ThreadPoolExecutor(cfg.verify_workers, thread_name_prefix="verify") as pool:
            await asyncio.gather(
                *(_run_family(r, teacher, cfg, pool, bar, totals, errors) for r in runs)
            )
    finally:
        bar.close()
        errors.close()
        if hasattr(teacher, "aclose"):
            await teacher.aclose()
    return (teacher.stats() if hasattr(teacher, "stats") else {}), totals


def run_instruct(
    cfg: InstructConfig,
    run_dir: str,
    progress: bool = True,
    envs: EnvsConfig | dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Ask the teacher for tasks until each family has ``tasks_per_family`` verified ones
    (or ``max_requests_per_family`` is spent); seeds, existing tasks and verification limits
    come from the families' settings ``envs`` (the pipeline config's ``envs:``). Returns the
    summary, also written to ``<out>/summary.json`` and under ``counts`` in
    ``<out>/manifest.json``."""
    started = time.time()
    out = instruct_dir(cfg, run_dir)
    storage.makedirs(out)
    try:
        if cfg.teacher.backend == "openai":
            resolve_api_key(cfg.teacher.api_key_env, cfg.teacher.base_url)
            if cfg.teacher.preflight:  # a dead endpoint fails here, in seconds
                check_endpoint(cfg.teacher, role="teacher")
        configs = family_config_dicts(envs)
        rejected = JsonlFile(storage.join(out, "rejected.jsonl"))
        runs = [FamilyRun(f, cfg, out, configs[f], rejected) for f in cfg.families]
    except (ValueError, SandboxUnavailable) as e:
        raise InstructError(str(e)) from e
    errors = ErrorLog("instruct")
    teacher_stats, totals = asyncio.run(_run_all(runs, cfg, progress, errors))
    families = {run.family: run.summary() for run in runs}
    summary = {
        "families": families,
        "proposals": sum(f["proposals"] for f in families.values()),
        "kept": sum(f["kept"] for f in families.values()),
        "rejected": sum(f["rejected"] for f in families.values()),
        "teacher": {
            "model": cfg.teacher.model,
            "base_url": getattr(cfg.teacher, "base_url", None),
            **teacher_stats,
            "requests": totals["requests"],
            "teacher_errors": totals["teacher_errors"],
        },
        # what to put in envs: so collection plays the kept tasks
        "envs": {name: {"task_files": [f["task_file"]]} for name, f in families.items()},
        "wall_s": round(time.time() - started, 2),
    }
    storage.write_json(storage.join(out, "summary.json"), summary)
    failure = error_failure(
        totals["teacher_errors"], totals["requests"], cfg.max_error_fraction, errors
    )
    write_manifest(
        out,
        "instruct",
        cfg,
        inputs={
            "seed_tasks": {run.family: len(run.seeds) for run in runs},
            "envs": {run.family: run.family_config for run in runs},
        },
        counts=summary,
        outputs={"tasks": storage.join(out, "tasks"), "rejected": rejected.location},
        started_at=started,
        failure=failure,
    )
    if failure is not None:
        raise StageFailed(
            f"instruct FAILED: {failure['errors']} of {failure['total']} teacher requests "
            f"failed (more than max_error_fraction {cfg.max_error_fraction})"
            f"{common_error_text(failure)}; outputs and manifest in {out}",
            summary,
        )
    return summary
