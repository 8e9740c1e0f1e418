"""Fault tolerance: a training worker SIGKILLed mid-run; Ray Train restarts the group and
every rank resumes from the latest checkpoint's step, not from 0."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from test_train import write_fixture_shards

from agentray.train.config import TrainConfig

pytestmark = pytest.mark.slow

RUN_NAME = "resume-test"


def _rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            break
    return out


def _registered_step(snapshot: Path) -> int | None:
    """The step of the latest checkpoint Ray Train has registered (its own bookkeeping)."""
    try:
        latest = json.loads(snapshot.read_text())["latest_checkpoint_result"]
    except (OSError, ValueError, KeyError):
        return None
    return latest["metrics"]["step"] if latest else None


def _worker_pids() -> list[int]:
    import ray
    from ray.util.state import list_actors

    actors = list_actors(
        address=ray.get_runtime_context().gcs_address,  # this session's cluster, not another
        filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
    )
    return [a.pid for a in actors if a.pid]


class Killer(threading.Thread):
    """Waits until a checkpoint is registered and the run has trained past it, then
    SIGKILLs one training worker process."""

    def __init__(self, out: Path, timeout_s: float = 400) -> None:
        super().__init__(daemon=True)
        self.metrics = out / "metrics.jsonl"
        self.snapshot = out / "ray_results" / RUN_NAME / "checkpoint_manager_snapshot.json"
        self.deadline = time.monotonic() + timeout_s
        self.killed_at: int | None = None  # the registered checkpoint step at the kill
        self.seen: list[dict] = []  # rows the first attempt logged before the kill
        self.error: str | None = None

    def run(self) -> None:
        pids: list[int] = []
        while time.monotonic() < self.deadline:
            rows = _rows(self.metrics)
            if rows and len(pids) < 2:
                pids = _worker_pids()  # asked early: the kill itself must be quick
            step = _registered_step(self.snapshot)
            if step and len(pids) == 2 and any(r["step"] == step + 1 for r in rows):
                self.seen, self.killed_at = rows, step
                os.kill(pids[0], signal.SIGKILL)
                return
            time.sleep(0.05)
        self.error = "no checkpoint was registered in time"


def test_killed_worker_resumes_from_the_checkpoint_step(tmp_path, tiny_model_dir, ray_local):
    from agentray.train.trainer import run_train

    write_fixture_shards(tiny_model_dir, tmp_path / "data")  # 48 rows
    out = tmp_path / "out"
    cfg = TrainConfig(
        model=tiny_model_dir,
        data=str(tmp_path / "data"),
        output=str(out),
        run_name=RUN_NAME,
        num_workers=2,
        zero_stage=2,
        micro_batch_size=4,  # 6 steps per epoch
        epochs=6,  # 36 steps
        lr=3e-3,
        max_seq_len=256,
        checkpoint_every_steps=9,  # mid-epoch: a resume must skip the batches already done
        keep_checkpoints=2,
        log_every_steps=9,
        max_failures=2,
    )
    killer = Killer(out)
    killer.start()
    summary = run_train(cfg, tmp_path, progress=False)
    killer.join(timeout=5)
    assert killer.error is None, killer.error
    assert killer.killed_at is not None, "the run ended before a worker could be killed"
    k = killer.killed_at

    # resumed once, from the checkpoint that was the latest at the kill, and ended on plan
    assert summary["resumed_from_steps"] == [k] and 0 < k < 36
    assert summary["steps"] == 36
    history = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history] == list(range(1, 37))
    assert [r["epoch"] for r in history] == [s // 6 for s in range(36)]
    assert all(r["sequences"] == 8 for r in history)

    # the same steps as the first attempt logged up to the checkpoint (the history came
    # back from it) ...
    before = {r["step"]: r for r in killer.seen}
    assert [history[s - 1]["loss"] for s in range(1, k + 1)] == [
        before[s]["loss"] for s in range(1, k + 1)
    ]
    # ... and the step after it starts from the restored scheduler and weights: the same
    # learning rate as the first attempt's, a loss near its own and far below the start
    first_try, resumed = before[k + 1], history[k]
    assert resumed["lr"] == first_try["lr"]
    assert abs(resumed["loss"] - first_try["loss"]) < 0.3 * (history[0]["loss"] - first_try["loss"])

    # checkpoints: keep-N, each with every rank's DeepSpeed state next to the HF model
    checkpoints = sorted(
        p for p in (out / "ray_results" / RUN_NAME).glob("checkpoint_*") if p.is_dir()
    )
    assert len(checkpoints) == 2
    last = checkpoints[-1]
    optimizer_files = sorted(p.name for p in (last / "deepspeed" / "state").glob("*optim*"))
    assert optimizer_files == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    ]
    assert (last / "config.json").exists() and (last / "model.safetensors").exists()
    assert json.loads((last / "train_state.json").read_text())["step"] == 36
    assert not (out / "model" / "deepspeed").exists()  # the served copy is the HF model only
