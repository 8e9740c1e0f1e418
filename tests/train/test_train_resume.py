"""Fault tolerance: a training worker SIGKILLed mid-run; Ray Train restarts the group and
every rank resumes from the latest checkpoint's step, not from 0; with the run on a local
disk and on S3 (checkpoints, metrics and the model in the bucket)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from test_train import write_fixture_shards

from agentray import storage
from agentray.train.config import TrainConfig

pytestmark = pytest.mark.slow

RUN_NAME = "resume-test"


def _rows(location: str) -> list[dict]:
    try:
        lines = storage.read_text(location).splitlines()
    except OSError:  # not written yet
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            break
    return out


def _registered_step(snapshot: str) -> int | None:
    """The step of the latest checkpoint Ray Train has registered (its own bookkeeping)."""
    try:
        latest = storage.read_json(snapshot)["latest_checkpoint_result"]
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

    def __init__(self, out: str, timeout_s: float = 400, workers: int = 2) -> None:
        super().__init__(daemon=True)
        self.workers = workers
        self.metrics = storage.join(out, "metrics.jsonl")
        self.snapshot = storage.join(
            out, "ray_results", RUN_NAME, "checkpoint_manager_snapshot.json"
        )
        self.deadline = time.monotonic() + timeout_s
        self.killed_at: int | None = None  # the registered checkpoint step at the kill
        self.seen: list[dict] = []  # rows the first attempt logged before the kill
        self.error: str | None = None

    def run(self) -> None:
        pids: list[int] = []
        while time.monotonic() < self.deadline:
            rows = _rows(self.metrics)
            if rows and len(pids) < self.workers:
                pids = _worker_pids()  # asked early: the kill itself must be quick
            step = _registered_step(self.snapshot)
            if step and len(pids) == self.workers and any(r["step"] == step + 1 for r in rows):
                self.seen, self.killed_at = rows, step
                os.kill(pids[0], signal.SIGKILL)
                return
            time.sleep(0.05)
        self.error = "no checkpoint was registered in time"


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path) -> str:
    """Where the run's data and outputs are: a local folder or a bucket."""
    if request.param == "local":
        return str(tmp_path)
    return request.getfixturevalue("s3_bucket")


def test_killed_worker_resumes_from_the_checkpoint_step(
    root, tmp_path, tiny_model_dir, ray_local, monkeypatch
):
    from agentray.train.trainer import run_train

    write_fixture_shards(tiny_model_dir, tmp_path / "shards")  # 48 rows
    data, out = storage.join(root, "data"), storage.join(root, "out")
    if storage.is_uri(root):
        storage.upload_dir(tmp_path / "shards", data)
    else:
        (tmp_path / "shards").rename(data)
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig(
        model=tiny_model_dir,
        data=data,
        output=out,
        run_name=RUN_NAME,
        num_workers=2,
        zero_stage=2,
        micro_batch_size=4,  # 6 steps per epoch
        epochs=6,  # 36 steps
        lr=3e-3,
        max_seq_len=256,
        checkpoint_every_steps=9,  # mid-epoch: a resume must skip the batches already done
        keep_checkpoints=2,
        # rank 0 publishes live metrics to S3 at each report (locally, a line every step):
        # the kill waits for the step after the checkpoint
        log_every_steps=1 if storage.is_uri(root) else 9,
        max_failures=2,
    )
    killer = Killer(out)
    killer.start()
    summary = run_train(cfg, root, progress=False)
    killer.join(timeout=5)
    assert killer.error is None, killer.error
    assert killer.killed_at is not None, "the run ended before a worker could be killed"
    k = killer.killed_at

    # resumed once, from the checkpoint that was the latest at the kill, and ended on plan
    assert summary["resumed_from_steps"] == [k] and 0 < k < 36
    assert summary["steps"] == 36
    history = _rows(storage.join(out, "metrics.jsonl"))
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
    files = storage.list_files(storage.join(out, "ray_results", RUN_NAME))
    checkpoints = sorted({f.rsplit("/deepspeed/", 1)[0] for f in files if "/deepspeed/" in f})
    assert len(checkpoints) == 2
    last = checkpoints[-1]
    optimizer_files = sorted(
        storage.name(f)
        for f in storage.list_files(storage.join(last, "deepspeed", "state"))
        if "optim" in storage.name(f)
    )
    assert optimizer_files == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt",
        "zero_pp_rank_1_mp_rank_00_optim_states.pt",
    ]
    assert storage.exists(storage.join(last, "config.json"))
    assert storage.exists(storage.join(last, "model.safetensors"))
    assert storage.read_json(storage.join(last, "train_state.json"))["step"] == 36
    model_files = storage.list_files(storage.join(out, "model"))
    assert storage.join(out, "model", "config.json") in model_files
    assert not any("/deepspeed/" in f for f in model_files)  # the served copy: HF model only
    assert not list(tmp_path.glob("s3:*"))  # nothing local named after the URI
