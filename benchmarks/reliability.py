"""Reliability: faults injected into the real stages, and what was lost, doubled and said.

    python benchmarks/reliability.py [--quick] [--only 1,3,7] [--keep]

One local Ray cluster (2 CPUs) for the whole script, the expert endpoint over real HTTP
(agentray.testing.expert_endpoint), real trajectory parquet. Each scenario prints one row:

  1 errors+stalls   the teacher fails a share of its requests (429 / 500) and stalls some;
                    the client retries
  2 outage+rerun    the teacher fails a run of requests with 503 mid-collect; a rerun after
                    it recovers runs again the task_error ids (rollout.retry_errors)
  3 actor kills     SIGKILL of an EnvPool actor and of the PolicyActor mid-run
  4 driver kill -9  `python -m jobs collect` killed mid-run, then run again
  5 dead endpoint   collect and eval against a closed port
  6 corrupt shard   a truncated trajectory shard: collect names it and exits 1; process
                    with quarantine_bad_shards sets it aside and trains on the rest
  7 bad lines       malformed JSONL lines and unknown family prefixes in AgentInstruct input

lost: expected ids with no row in the output. doubled: ids with more than one row that
stands (any status but task_error; a task_error row is superseded by its retry by design,
agentray.records.replaces_kept) or two rows of one attempt; in a training set, ids on more
than one row. Every figure is measured; the script exits 1 if anything was lost or doubled,
or a scenario was not reported as expected.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml
from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from agentray import storage
from agentray.cli import app
from agentray.collect.config import CollectConfig, RolloutConfig
from agentray.collect.engine import RolloutEngine, load_tasks
from agentray.collect.run import run_collect
from agentray.collect.sink import ParquetSink, finished_ids
from agentray.envs.play import expert_trajectory
from agentray.envs.registry import make_env
from agentray.failures import StageFailed
from agentray.policies.registry import OpenAIConfig
from agentray.process.config import ProcessConfig
from agentray.process.run import run_process
from agentray.ray_utils import ensure_ray
from agentray.records import read_trajectory_shard
from agentray.testing.expert_endpoint import ExpertEndpoint
from agentray.types import Status

REPO = Path(__file__).resolve().parents[1]
TASK_ERROR = Status.TASK_ERROR.value


@dataclass
class Row:
    """One scenario's figures."""

    scenario: str
    faults: str = ""
    expected: int = 0
    lost: int = 0
    doubled: int = 0
    reported: str = ""
    problems: list[str] = field(default_factory=list)  # what was not as expected
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.doubled == 0 and not self.problems

    def expect(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)


# -- what is on disk ---------------------------------------------------------------------


def disk_rows(out_dir: str) -> dict[str, list[tuple[str, int]]]:
    """id -> (status, attempt) of every row of every shard, in write order."""
    rows: dict[str, list[tuple[str, int]]] = {}
    for shard in storage.list_files(out_dir, ".parquet"):
        table = read_trajectory_shard(shard, ["id", "status", "attempt"]).to_pylist()
        for r in table:
            rows.setdefault(r["id"], []).append((r["status"], r.get("attempt") or 1))
    return rows


def lost_doubled(expected: set[str], rows: dict[str, list[tuple[str, int]]]) -> tuple[int, int]:
    lost = len(expected - set(rows))
    doubled = sum(
        1
        for per_id in rows.values()
        if sum(s != TASK_ERROR for s, _ in per_id) > 1
        or max(Counter(a for _, a in per_id).values()) > 1
    )
    return lost, doubled


def kept_statuses(rows: dict[str, list[tuple[str, int]]]) -> Counter:
    """The status that stands for each id (the first non-error row, else the last)."""
    kept = Counter()
    for per_id in rows.values():
        standing = [s for s, _ in per_id if s != TASK_ERROR]
        kept[standing[0] if standing else TASK_ERROR] += 1
    return kept


def show(counts: Counter | dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"


@contextlib.contextmanager
def captured_stderr() -> Iterator[io.StringIO]:
    """What the stage printed on stderr (its error lines), kept off the console."""
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        yield buffer


def error_lines(text: str, stage: str = "collect") -> int:
    """The errors a stage reported on stderr: the lines it printed, and those it counted
    as not shown (at most one line a second)."""
    lines = text.splitlines()
    shown = sum(1 for line in lines if line.startswith(f"{stage}: task_error"))
    return shown + sum(int(n) for line in lines for n in re.findall(r"\+(\d+) more", line))


def collect_cfg(base_url: str, families: list[str], **policy: Any) -> CollectConfig:
    rollout = RolloutConfig(
        max_in_flight=8, num_env_pools=1, envs_per_pool=8, flush_every=8, metrics=False
    )
    return CollectConfig(
        families=families,
        policy=OpenAIConfig(model="expert", base_url=base_url, **policy),
        rollout=rollout,
    )


def all_ids(families: list[str], envs: dict) -> set[str]:
    return {t.id for t in load_tasks(families, "train", envs)}


def envs_of(families: list[str], n: int) -> dict[str, dict[str, int]]:
    return {f: {"n_train": n, "n_test": 1} for f in families}


# -- 1. errors and stalls -------------------------------------------------------------------


def errors_and_stalls(work: Path, n: int) -> Row:
    families = ["db", "kg"]
    envs = envs_of(families, n)
    row = Row("1 endpoint errors + stalls (collect)")
    fault_cfg = {
        "error_rate": 0.3,
        "error_codes": [429, 500],
        "retry_after_s": 0.05,
        "stall_rate": 0.05,
        "seed": 3,
    }
    with ExpertEndpoint(families=families, family_configs=envs, latency_ms=10, **fault_cfg) as ep:
        cfg = collect_cfg(
            ep.base_url,
            families,
            timeout_s=1.0,
            max_retries=5,
            retry_backoff_s=0.05,
            preflight=False,  # a flaky endpoint is this scenario; scenario 5 the preflight
        )
        with captured_stderr() as err:
            summary = run_collect(cfg, str(work / "s1"), progress=False, envs=envs)
        stats = ep.stats()
    rows = disk_rows(str(work / "s1" / "collect" / "trajectories"))
    expected = all_ids(families, envs)
    row.expected = len(expected)
    row.lost, row.doubled = lost_doubled(expected, rows)
    injected = stats["errors_injected"] + stats["stalls"]
    row.faults = (
        f"{injected} of {stats['requests']} requests: "
        f"{show(stats['errors_by_status'])} errors, {stats['stalls']} stalls"
    )
    client = summary["policy_stats"]
    statuses = kept_statuses(rows)
    row.reported = (
        f"exit ok; client retried {client.get('retries', 0)} "
        f"({client.get('timeouts', 0)} timeouts); statuses: {show(statuses)}; "
        f"{error_lines(err.getvalue())} task_errors on stderr"
    )
    row.expect(injected > 0, "no fault was injected")
    row.expect(error_lines(err.getvalue()) == statuses[TASK_ERROR], "a task_error went unsaid")
    return row


# -- 2. outage, then a rerun ------------------------------------------------------------


def outage_then_rerun(work: Path, n: int) -> Row:
    families = ["db", "kg"]
    envs = envs_of(families, n)
    run_dir = str(work / "s2")
    out = storage.join(run_dir, "collect", "trajectories")
    expected = all_ids(families, envs)
    outage = max(2, len(expected) // 6)
    row = Row("2 endpoint outage mid-collect, rerun")
    with ExpertEndpoint(
        families=families,
        family_configs=envs,
        outage_after=len(expected) // 2,
        outage_requests=outage,
    ) as ep:
        cfg = collect_cfg(ep.base_url, families, max_retries=0, preflight=False)
        with captured_stderr() as err:
            first = _collect_or_failed(cfg, run_dir, envs)
        errors_first = kept_statuses(disk_rows(out))[TASK_ERROR]
        with captured_stderr():
            again = run_collect(cfg, run_dir, progress=False, envs=envs)
        stats = ep.stats()
    rows = disk_rows(out)
    row.expected = len(expected)
    row.lost, row.doubled = lost_doubled(expected, rows)
    completed = Counter(i for i, per_id in rows.items() for s, _ in per_id if s == "completed")
    row.faults = f"{stats['outage_errors']} requests failed with 503 in a row"
    row.reported = (
        f"run 1: {errors_first} task_error ({error_lines(err.getvalue())} lines, "
        f"{first}); rerun: retried {again['retried_errors']}, skipped "
        f"{again['skipped_already_done']}; final {show(kept_statuses(rows))}; on disk "
        f"{sum(map(len, rows.values()))} rows (the superseded errors stay, append-only)"
    )
    row.expect(stats["outage_errors"] == outage, "the outage did not happen")
    row.expect(errors_first > 0, "no episode ended in task_error during the outage")
    row.expect(again["retried_errors"] == errors_first, "the rerun did not retry every error")
    row.expect(
        set(completed) == expected and max(completed.values()) == 1,
        "not every id completed exactly once",
    )
    return row


def _collect_or_failed(cfg: CollectConfig, run_dir: str, envs: dict) -> str:
    try:
        run_collect(cfg, run_dir, progress=False, envs=envs)
    except StageFailed as e:
        return f"exit 1: {str(e)[:60]}…"
    return "exit 0"


# -- 3. actor kills ---------------------------------------------------------------------


def actor_kills(work: Path, n: int) -> Row:
    families = ["db", "kg"]
    envs = envs_of(families, n)
    tasks = load_tasks(families, "train", envs)
    row = Row("3 SIGKILL EnvPool + PolicyActor")
    killed: list[str] = []
    out = work / "s3"
    with ExpertEndpoint(families=families, family_configs=envs, latency_ms=30) as ep:
        rollout = RolloutConfig(
            max_in_flight=16, num_env_pools=2, envs_per_pool=8, flush_every=8, metrics=False
        )
        engine = RolloutEngine(rollout, OpenAIConfig(model="expert", base_url=ep.base_url), envs)
        sink = ParquetSink(out, flush_every=8)

        async def chaos() -> None:
            await _when_written(sink, len(tasks) // 6)
            os.kill(await engine.pools.slots[0].actor.pid.remote(), signal.SIGKILL)
            killed.append(f"EnvPool at {len(sink.written)}")
            await _when_written(sink, len(tasks) // 2)
            os.kill(await engine.policies.slots[0].actor.pid.remote(), signal.SIGKILL)
            killed.append(f"PolicyActor at {len(sink.written)}")

        async def main() -> dict:
            summary, _ = await asyncio.gather(engine.run(tasks, sink, progress=False), chaos())
            return summary

        try:
            with captured_stderr():
                summary = asyncio.run(asyncio.wait_for(main(), timeout=300))
        finally:
            engine.shutdown()
        left = ep.stats()["disconnects"]  # requests of the killed PolicyActor
    rows = disk_rows(str(out))
    expected = {t.id for t in tasks}
    row.expected = len(expected)
    row.lost, row.doubled = lost_doubled(expected, rows)
    row.faults = f"2 SIGKILLs ({', '.join(killed)} of {len(tasks)} written)"
    row.reported = (
        f"replaced {show(summary['actor_replacements'])}; episodes restarted "
        f"{show(summary['retries'])}; statuses {show(kept_statuses(rows))}; the endpoint "
        f"saw {left} callers leave"
    )
    row.expect(len(killed) == 2, "the run ended before both kills")
    row.expect(summary["actor_replacements"] == {"env_pool": 1, "policy": 1}, "actors not replaced")
    row.expect(kept_statuses(rows) == Counter(completed=len(expected)), "not all completed")
    return row


async def _when_written(sink: ParquetSink, n: int) -> None:
    while len(sink.written) < n:
        await asyncio.sleep(0.005)


# -- 4. driver kill -9 -------------------------------------------------------------------


def driver_kill(work: Path, n: int) -> Row:
    import ray

    families = ["db"]
    envs = envs_of(families, n)
    run_dir = work / "s4"
    out = storage.join(str(run_dir), "collect", "trajectories")
    config = work / "s4.yaml"
    address = ray.get_runtime_context().gcs_address
    row = Row("4 driver kill -9, rerun")
    with ExpertEndpoint(families=families, family_configs=envs, latency_ms=100) as ep:
        collect = {
            "families": families,
            "policy": {"backend": "openai", "model": "expert", "base_url": ep.base_url},
            "rollout": {"max_in_flight": 4, "num_env_pools": 1, "flush_every": 4},
        }
        config.write_text(
            yaml.safe_dump({"run_dir": str(run_dir), "envs": envs, "collect": collect})
        )
        before = _kill_driver_after_shards(config, address, out, shards=2)
        rerun = subprocess.run(
            _jobs_collect(config),
            cwd=REPO,
            env=_driver_env(address),
            capture_output=True,
            text=True,
            timeout=300,
        )
    rows = disk_rows(out)
    expected = all_ids(families, envs)
    row.expected = len(expected)
    row.lost, row.doubled = lost_doubled(expected, rows)
    counts = storage.read_json(storage.join(str(run_dir), "collect", "manifest.json"))["counts"]
    row.faults = f"1 SIGKILL of the driver ({before} of {len(expected)} episodes written)"
    row.reported = (
        f"rerun exit {rerun.returncode}: skipped {counts['skipped_already_done']} done, "
        f"ran {counts['episodes']}"
    )
    row.expect(0 < before < len(expected), "the driver was not killed mid-run")
    row.expect(rerun.returncode == 0, f"rerun failed: {rerun.stderr[-300:]}")
    row.expect(counts["skipped_already_done"] == before, "the rerun redid written episodes")
    return row


def _jobs_collect(config: Path) -> list[str]:
    return [sys.executable, "-m", "jobs", "collect", "--config", str(config)]


def _driver_env(address: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return env | ({"RAY_ADDRESS": address} if address else {})


def _kill_driver_after_shards(config: Path, address: str, out: str, shards: int) -> int:
    driver = subprocess.Popen(
        _jobs_collect(config),
        cwd=REPO,
        env=_driver_env(address),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while len(storage.list_files(out, ".parquet")) < shards:
        if driver.poll() is not None or time.monotonic() > deadline:
            driver.kill()
            raise RuntimeError(f"the driver ended or wrote nothing: {driver.stderr.read()[-500:]}")
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    driver.stderr.close()
    return len(finished_ids(out))


# -- 5. dead endpoint ------------------------------------------------------------------


def dead_endpoint(work: Path, n: int) -> list[Row]:
    rows = []
    with socket.socket() as s:  # bound, not listening: every connection is refused
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
        policy = {"backend": "openai", "model": "agentray", "base_url": url}
        for stage, args in (
            ("collect", ["-m", "jobs", "collect", "--config"]),
            ("eval", ["-m", "agentray.cli", "eval"]),
        ):
            section = {"families": ["db"], "max_tasks_per_family": 1, "policy": policy}
            config = work / f"s5-{stage}.yaml"
            config.write_text(
                yaml.safe_dump({"run_dir": str(work / f"s5-{stage}"), stage: section})
            )
            rows.append(_dead_endpoint_run(stage, [sys.executable, *args, str(config)], url))
    return rows


def _dead_endpoint_run(stage: str, command: list[str], url: str) -> Row:
    row = Row(f"5 dead endpoint ({stage})", faults="1 closed port", expected=0)
    started = time.perf_counter()
    result = subprocess.run(
        command, cwd=REPO, env=_driver_env(None), capture_output=True, text=True, timeout=120
    )
    seconds = time.perf_counter() - started
    last = (result.stderr.strip().splitlines() or [""])[-1]
    row.reported = f"exit {result.returncode} in {seconds:.1f} s: {_short(last, 110)}"
    row.expect(result.returncode == 1, f"exit {result.returncode}, not 1")
    row.expect(url in last, "the URL is not in the last line")
    row.expect("Traceback" not in result.stderr, "a traceback was printed")
    row.expect(seconds < 30, f"{seconds:.0f} s, over the 30 s bound")
    return row


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- 6. a corrupt shard -----------------------------------------------------------------


def corrupt_shard(work: Path, n: int) -> Row:
    run_dir = work / "s6"
    out = storage.join(str(run_dir), "collect", "trajectories")
    by_shard = _expert_shards(out, ["db", "kg"], n, per_shard=max(2, n // 2))
    truncated = sorted(by_shard)[1]
    data = storage.read_bytes(truncated)
    storage.write_bytes(truncated, data[: len(data) // 2])
    row = Row("6 truncated trajectory shard")
    row.faults = f"1 of {len(by_shard)} shards cut in half"

    config = work / "s6.yaml"
    config.write_text(yaml.safe_dump({"run_dir": str(run_dir)}))
    collect = CliRunner().invoke(app, ["collect", str(config)])
    collect_line = (collect.stderr.strip().splitlines() or [""])[-1]

    stats, rejected, train = _process(
        run_dir, ProcessConfig(quarantine_bad_shards=True, max_seq_len=2048)
    )
    expected = {i for shard, ids in by_shard.items() if shard != truncated for i in ids}
    trained = Counter(r["id"] for r in train if r["source"] == "agent")
    row.expected = len(expected)
    row.lost = len(expected - set(trained))
    row.doubled = sum(1 for c in trained.values() if c > 1)
    aside = [r for r in rejected if r.get("file") == truncated]
    row.reported = (
        f"collect exit {collect.exit_code}: {_short(_named(collect_line, truncated), 70)}; "
        f"process: {len(aside)} rejected.jsonl line ({_reason(aside)}), "
        f"unreadable_files {len(stats['unreadable_files'])}"
    )
    row.expect(collect.exit_code == 1 and truncated in collect_line, "collect did not name it")
    row.expect(len(aside) == 1 and stats["unreadable_files"] == [truncated], "not set aside")
    row.expect(not set(by_shard[truncated]) & set(trained), "the truncated shard was trained on")
    return row


def _named(line: str, path: str) -> str:
    return line.replace(path, "<shard path>")


def _reason(rows: list[dict]) -> str:
    return show(Counter(reason_kind(r["reason"]) for r in rows))


def reason_kind(reason: str) -> str:
    """A rejected.jsonl reason without its details: ``malformed JSON``, ``unknown family``."""
    return re.match(r"[A-Za-z -]*", reason).group().strip()


def _expert_shards(out: str, families: list[str], n: int, per_shard: int) -> dict[str, list[str]]:
    """The expert's trajectories of the first ``n`` tasks of each family, as collection
    writes them; the ids of each shard."""
    sink = ParquetSink(out, flush_every=per_shard)
    for family in families:
        env = make_env(family)
        for task in env.tasks("train")[:n]:
            sink.add(expert_trajectory(env, task))
        env.close()
    sink.flush()
    return {
        shard: pq.read_table(shard, columns=["id"]).column("id").to_pylist()
        for shard in storage.list_files(out, ".parquet")
    }


def _process(run_dir: Path, cfg: ProcessConfig) -> tuple[dict, list[dict], list[dict]]:
    with captured_stderr():
        stats = run_process(cfg, str(run_dir), progress=False)
    out = run_dir / "process"
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    train = pq.read_table(out / "train", columns=["id", "source", "family"]).to_pylist()
    return stats, rejected, train


# -- 7. malformed lines and unknown families ---------------------------------------------

MALFORMED = [
    '{"id": "db_cut", "conversations": [{"from": "human"',  # cut short
    "[1, 2]",  # JSON, not a record
    "\udcff\udcfe not text",  # not UTF-8
]


def bad_lines(work: Path, n: int) -> Row:
    run_dir = work / "s7"
    good, unknown, path = _agentinstruct_file(run_dir, n)
    row = Row("7 malformed JSONL lines, unknown families")
    row.faults = f"{len(MALFORMED)} malformed lines, {len(unknown)} unknown-family records"
    stats, rejected, train = _process(
        run_dir, ProcessConfig(agentinstruct=[str(path)], max_seq_len=2048)
    )
    trained = Counter(r["id"] for r in train if r["source"] == "agent")
    row.expected = len(good)
    row.lost = len(set(good) - set(trained))
    row.doubled = sum(1 for c in trained.values() if c > 1)
    at_line = {(r.get("file"), r.get("line")): r["reason"] for r in rejected}
    bad_at = [line for line, record_id in _bad_line_numbers(path, good).items() if record_id]
    named = [line for line in bad_at if (str(path), line) in at_line]
    row.reported = (
        f"exit ok; rejected.jsonl: {len(named)} of {len(bad_at)} bad lines by file:line "
        f"({show(Counter(reason_kind(at_line[(str(path), i)]) for i in named))})"
    )
    row.expect(len(named) == len(bad_at), "a bad line is not in rejected.jsonl")
    row.expect(not set(unknown) & set(trained), "an unknown family was trained on")
    row.expect(not {r["family"] for r in train} & {"zzz", "yyy"}, "an unknown family trained")
    return row


def _agentinstruct_file(run_dir: Path, n: int) -> tuple[list[str], list[str], Path]:
    """An AgentInstruct JSONL file: the expert's db and kg records, records of unknown
    families (their ids' prefixes) and malformed lines between them."""
    records = []
    for family in ("db", "kg"):
        env = make_env(family)
        for task in env.tasks("train")[:n]:
            records.append(expert_trajectory(env, task))
        env.close()
    lines = [json.dumps({"id": r.id, "conversations": r.conversations}) for r in records]
    unknown = []
    for i, prefix in enumerate(("zzz", "yyy")):  # a real conversation, an unknown family
        unknown.append(f"{prefix}_{i}")
        record = {"id": unknown[-1], "conversations": records[-1 - i].conversations}
        lines.insert(3 * i + 1, json.dumps(record))
    for i, bad in enumerate(MALFORMED):
        lines.insert(4 * i + 2, bad)
    path = run_dir / "public" / "agent.jsonl"
    path.parent.mkdir(parents=True)
    path.write_bytes("\n".join(lines).encode("utf-8", "surrogateescape"))
    good = [r.id for r in records]
    return good, unknown, path


def _bad_line_numbers(path: Path, good: list[str]) -> dict[int, str]:
    """line number -> what is wrong there ('' for a good line)."""
    known = set(good)
    out = {}
    for number, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        try:
            record_id = json.loads(raw.decode("utf-8")).get("id")
        except (ValueError, AttributeError):
            out[number] = "malformed"
            continue
        out[number] = "" if record_id in known else f"unknown family {record_id}"
    return out


# -- the run ---------------------------------------------------------------------------

SCENARIOS: dict[str, Callable[[Path, int], Row | list[Row]]] = {
    "1": errors_and_stalls,
    "2": outage_then_rerun,
    "3": actor_kills,
    "4": driver_kill,
    "5": dead_endpoint,
    "6": corrupt_shard,
    "7": bad_lines,
}
# tasks per family: (full, --quick)
SIZES = {
    "1": (24, 8),
    "2": (24, 8),
    "3": (40, 16),
    "4": (40, 16),
    "5": (1, 1),
    "6": (8, 4),
    "7": (8, 4),
}


def run_scenario(key: str, work: Path, quick: bool, console: Console) -> list[Row]:
    started = time.perf_counter()
    console.print(f"[bold]scenario {key}[/] {SCENARIOS[key].__name__} ...")
    try:
        result = SCENARIOS[key](work, SIZES[key][1 if quick else 0])
    except Exception as e:  # a scenario that breaks is a failed check, not a crash
        result = Row(f"{key} {SCENARIOS[key].__name__}", problems=[f"{type(e).__name__}: {e}"])
    rows = result if isinstance(result, list) else [result]
    seconds = time.perf_counter() - started
    for row in rows:
        row.seconds = seconds / len(rows)
    return rows


def report(rows: list[Row], console: Console) -> None:
    table = Table(title="faults injected into the real stages", show_lines=True)
    for column in ("scenario", "faults injected", "expected", "lost", "doubled", "reported"):
        table.add_column(
            column,
            justify="right" if column in ("expected", "lost", "doubled") else "left",
            overflow="fold",
        )
    table.add_column("s", justify="right")
    table.add_column("ok")
    for row in rows:
        ok = "yes" if row.ok else "[red]NO[/]: " + "; ".join(row.problems)
        table.add_row(
            row.scenario,
            row.faults,
            str(row.expected),
            str(row.lost),
            str(row.doubled),
            row.reported,
            f"{row.seconds:.0f}",
            ok,
        )
    console.print(table)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tasks per scenario")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, e.g. 1,3,7")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    keys = [k.strip() for k in args.only.split(",") if k.strip()]
    if unknown := [k for k in keys if k not in SCENARIOS]:
        parser.error(f"unknown scenarios {unknown}; known: {', '.join(SCENARIOS)}")
    console = Console(width=200)
    work = Path(tempfile.mkdtemp(prefix="agentray-reliability-"))
    started = time.perf_counter()
    import ray

    ensure_ray(num_cpus=2)
    try:
        rows = [row for key in keys for row in run_scenario(key, work, args.quick, console)]
    finally:
        ray.shutdown()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(rows, console)
    lost, doubled = sum(r.lost for r in rows), sum(r.doubled for r in rows)
    bad = [r.scenario for r in rows if not r.ok]
    expected = sum(r.expected for r in rows)
    verdict = (
        f"{len(rows)} checks, {expected} items expected: lost {lost}, doubled {doubled}; "
        f"{'every fault reported as expected' if not bad else 'NOT as expected: ' + ', '.join(bad)}"
        f" ({time.perf_counter() - started:.0f} s)"
    )
    console.print(("[green]PASS[/] " if not bad else "[red]FAIL[/] ") + verdict)
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
