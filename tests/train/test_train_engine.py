"""train.engine: the plain torch engine for one rank trains like DeepSpeed (same losses,
rates and norms step by step) and resumes from its own checkpoints after a worker dies."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError
from test_train import write_fixture_shards
from test_train_resume import RUN_NAME, Killer, _rows

from agentray import storage
from agentray.train.config import TrainConfig
from agentray.train.engine import GOMP_DEFAULT_SPINCOUNT, use_torch_engine, worker_env_vars


def test_auto_picks_torch_only_for_one_rank_without_zero3_offload_or_deepspeed_keys():
    assert use_torch_engine(TrainConfig(num_workers=1))
    assert use_torch_engine(TrainConfig(num_workers=1, zero_stage=0))
    assert not use_torch_engine(TrainConfig(num_workers=2))
    assert not use_torch_engine(TrainConfig(num_workers=1, zero_stage=3))
    assert not use_torch_engine(TrainConfig(num_workers=1, offload="optimizer"))
    assert not use_torch_engine(TrainConfig(num_workers=1, deepspeed={"steps_per_print": 5}))
    assert not use_torch_engine(TrainConfig(num_workers=1, engine="deepspeed"))
    for bad in ({"num_workers": 2}, {"num_workers": 1, "zero_stage": 3}):
        with pytest.raises(ValidationError, match="engine='torch' is single-rank"):
            TrainConfig(engine="torch", **bad)


def test_workers_get_libgomps_own_spin_count_unless_the_user_chose_one():
    # the training function runs on a Ray Train thread, where libgomp would throttle its spin
    assert worker_env_vars({}) == {"GOMP_SPINCOUNT": GOMP_DEFAULT_SPINCOUNT}
    assert worker_env_vars({"GOMP_SPINCOUNT": "0"}) == {}
    assert worker_env_vars({"OMP_WAIT_POLICY": "PASSIVE"}) == {}


def test_torch_engine_steps_a_fused_adamw_with_weight_decay_on_matrices_only(tiny_model_dir):
    from agentray.train.torch_engine import build_torch_engine

    cfg = TrainConfig(model=tiny_model_dir, num_workers=1, weight_decay=0.1)
    optimizer = build_torch_engine(cfg, tiny_model_dir, total_steps=10).optimizer
    assert optimizer.defaults["fused"] is True
    decays = {
        len(p.shape) >= 2: group["weight_decay"]
        for group in optimizer.param_groups
        for p in group["params"]
    }
    assert decays == {True: 0.1, False: 0.0}


def _one_rank(tmp_path, tiny_model_dir, engine: str, **extra) -> TrainConfig:
    return TrainConfig(
        model=tiny_model_dir,
        data=str(tmp_path / "shards"),
        output=str(tmp_path / engine),
        engine=engine,
        num_workers=1,
        zero_stage=2,
        micro_batch_size=4,
        gradient_accumulation_steps=2,  # 6 steps per epoch of the 48 rows
        lr=3e-3,
        max_seq_len=256,
        shuffle=False,
        tensorboard=False,
        **extra,
    )


@pytest.mark.slow
def test_torch_engine_trains_step_for_step_like_deepspeed(tmp_path, tiny_model_dir, ray_local):
    from agentray.train.trainer import run_train

    write_fixture_shards(tiny_model_dir, tmp_path / "shards")
    histories = {}
    for engine in ("torch", "deepspeed"):
        cfg = _one_rank(tmp_path, tiny_model_dir, engine, max_steps=5)
        summary = run_train(cfg, str(tmp_path), progress=False)
        assert summary["steps"] == 5
        histories[engine] = [
            json.loads(line)
            for line in (tmp_path / engine / "metrics.jsonl").read_text().splitlines()
        ]
        checkpoint = storage.list_files(summary["checkpoint"])
        names = {storage.name(f) for f in checkpoint}
        assert ("torch_state.pt" in names) == (engine == "torch"), names
    torch_run, ds_run = histories["torch"], histories["deepspeed"]
    assert torch_run[0]["loss"] == pytest.approx(ds_run[0]["loss"], rel=1e-6)
    for ours, theirs in zip(torch_run, ds_run, strict=True):
        assert ours["lr"] == pytest.approx(theirs["lr"], rel=1e-9)
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-4)
        assert ours["grad_norm"] == pytest.approx(theirs["grad_norm"], rel=1e-3)
        assert ours["tokens"] == theirs["tokens"]
    assert torch_run[-1]["loss"] < torch_run[0]["loss"] - 0.05  # it learns


@pytest.mark.slow
def test_torch_engine_resumes_after_its_worker_is_killed(tmp_path, tiny_model_dir, ray_local):
    from agentray.train.trainer import run_train

    write_fixture_shards(tiny_model_dir, tmp_path / "shards")
    cfg = _one_rank(
        tmp_path,
        tiny_model_dir,
        "torch",
        epochs=5,  # 30 steps
        run_name=RUN_NAME,
        checkpoint_every_steps=8,  # mid-epoch: the resume skips the batches already done
        log_every_steps=8,
        max_failures=1,
    )
    out = str(tmp_path / "torch")
    killer = Killer(out, workers=1)
    killer.start()
    summary = run_train(cfg, str(tmp_path), progress=False)
    killer.join(timeout=5)
    assert killer.error is None, killer.error
    k = killer.killed_at
    assert k is not None, "the run ended before its worker could be killed"
    assert summary["resumed_from_steps"] == [k] and summary["steps"] == 30
    history = _rows(storage.join(out, "metrics.jsonl"))
    assert [r["step"] for r in history] == list(range(1, 31))
    assert [r["epoch"] for r in history] == [s // 6 for s in range(30)]
    before = {r["step"]: r for r in killer.seen}
    assert [history[s - 1]["loss"] for s in range(1, k + 1)] == [
        before[s]["loss"] for s in range(1, k + 1)
    ]
    # the restored weights, optimizer and schedule give the first attempt's next step
    assert history[k]["lr"] == before[k + 1]["lr"]
    assert history[k]["loss"] == pytest.approx(before[k + 1]["loss"], rel=1e-5)
