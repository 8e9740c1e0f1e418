"""The train stage: Ray Train's TorchTrainer runs DeepSpeed (ZeRO 0/2/3) on every worker.

The driver reads the tokenized shards with Ray Data, plans the number of optimizer steps,
and starts ``num_workers`` workers; each takes its equal share of rows through
``get_dataset_shard``, trains, and at the end all ranks help gather the weights that rank 0
saves in HF format. The driver copies that checkpoint to ``<output>/model``.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from ray.data.collate_fn import NumpyBatchCollateFn

from agentray.train.config import TrainConfig

ZERO_CONFIG_DIR = Path(__file__).resolve().parent / "zero_configs"
IGNORE_INDEX = -100
METRICS_FILE = "train_metrics.jsonl"  # per-step history carried inside the checkpoint


# ---------------------------------------------------------------------------- planning


def deepspeed_config(cfg: TrainConfig) -> dict[str, Any]:
    """The ZeRO template for ``cfg.zero_stage`` filled from ``cfg`` (no "auto" values)."""
    ds = json.loads((ZERO_CONFIG_DIR / f"zero{cfg.zero_stage}.json").read_text())
    ds.update(
        train_micro_batch_size_per_gpu=cfg.micro_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        train_batch_size=cfg.global_batch_size(),
        gradient_clipping=cfg.max_grad_norm,
        bf16={"enabled": cfg.precision == "bf16"},
        seed=cfg.seed,
    )
    return _deep_merge(ds, cfg.deepspeed)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def plan_steps(num_rows: int, cfg: TrainConfig) -> tuple[int, int]:
    """(total optimizer steps, steps per epoch). Every worker runs exactly these many steps:
    a rank that stopped early would leave the others waiting in a collective."""
    steps_per_epoch = num_rows // cfg.global_batch_size()
    if steps_per_epoch == 0:
        raise ValueError(
            f"{num_rows} training rows are fewer than one optimizer step needs "
            f"(num_workers * micro_batch_size * gradient_accumulation_steps = "
            f"{cfg.global_batch_size()}); lower those or add data"
        )
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    return total, steps_per_epoch


class PadCollate(NumpyBatchCollateFn):
    """Right-pads a Ray Data batch of ragged ``input_ids``/``labels`` (cut at
    ``max_seq_len``) into tensors: ids with ``pad_id``, labels with -100, plus the mask."""

    def __init__(self, pad_id: int, max_seq_len: int) -> None:
        self.pad_id = pad_id
        self.max_seq_len = max_seq_len

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        import torch

        ids = [np.asarray(x, dtype=np.int64)[: self.max_seq_len] for x in batch["input_ids"]]
        labels = [np.asarray(x, dtype=np.int64)[: self.max_seq_len] for x in batch["labels"]]
        width = max(len(x) for x in ids)
        out_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        out_labels = torch.full((len(ids), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for i, (row_ids, row_labels) in enumerate(zip(ids, labels, strict=True)):
            n = len(row_ids)
            out_ids[i, :n] = torch.from_numpy(row_ids)
            out_labels[i, :n] = torch.from_numpy(row_labels)
            mask[i, :n] = 1
        return {"input_ids": out_ids, "labels": out_labels, "attention_mask": mask}


# ---------------------------------------------------------------------------- worker


def _skip_cpu_shm_build() -> None:
    """DeepSpeed JIT-compiles a shared-memory comm op on CPU (slow, needs a compiler);
    gloo alone is correct, so skip it."""
    # import_module, not `import deepspeed.comm.torch as m`: that attribute path resolves to
    # the real torch module (deepspeed.comm re-exports it), and the patch would miss.
    ds_torch = importlib.import_module("deepspeed.comm.torch")
    ds_torch.build_shm_op = lambda: None


def _build_engine(cfg: TrainConfig, model_path: str, ds_config: dict[str, Any], total: int):
    import deepspeed
    import torch
    from transformers import AutoModelForCausalLM, get_scheduler

    # Join the process group Ray Train set up (gloo / nccl) before anything reads the
    # world size from DeepSpeed, HfDeepSpeedConfig included.
    deepspeed.init_distributed(dist_backend="nccl" if cfg.use_gpu else "gloo")
    hf_ds_config = None
    if cfg.zero_stage == 3 and importlib.util.find_spec("accelerate") is not None:
        # Kept alive while loading: from_pretrained then builds the model partitioned
        # (zero.Init) instead of materialising all weights on every rank. transformers
        # needs `accelerate` for this; without it each rank loads the full model first.
        from transformers.integrations import HfDeepSpeedConfig

        hf_ds_config = HfDeepSpeedConfig(ds_config)  # noqa: F841
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    # A torch optimizer, not a config-named one: DeepSpeed's fused/CPU Adam is a JIT build.
    # ZeRO-3 partitioned params are flat: their real shape is in ds_shape.
    matrices = [p for p in model.parameters() if len(getattr(p, "ds_shape", p.shape)) >= 2]
    vectors = [p for p in model.parameters() if len(getattr(p, "ds_shape", p.shape)) < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": matrices, "weight_decay": cfg.weight_decay},
            {"params": vectors, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )
    schedule = {"constant": "constant_with_warmup"}.get(cfg.lr_schedule, cfg.lr_schedule)

    def scheduler(ds_optimizer):  # built on DeepSpeed's wrapped optimizer, not ours
        return get_scheduler(
            schedule,
            ds_optimizer,
            num_warmup_steps=math.ceil(cfg.warmup_ratio * total),
            num_training_steps=total,
        )

    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config
    )
    return engine


def _micro_step(engine, batch: dict[str, Any]):
    """Forward + backward on one micro-batch; returns
    [loss_sum, loss_tokens, tokens, padded_tokens, sequences]."""
    import torch
    import torch.nn.functional as F

    batch = {k: v.to(engine.device) for k, v in batch.items()}
    logits = engine(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    loss_sum = F.cross_entropy(
        logits[:, :-1].float().reshape(-1, logits.size(-1)),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    n_loss = (targets != IGNORE_INDEX).sum()
    # Mean over this micro-batch's loss tokens; DeepSpeed divides by the accumulation steps.
    engine.backward(loss_sum / n_loss.clamp(min=1))
    engine.step()
    return torch.stack(
        [
            loss_sum.detach(),
            n_loss.float(),
            batch["attention_mask"].sum().float(),
            torch.tensor(float(batch["input_ids"].numel()), device=engine.device),
            torch.tensor(float(batch["input_ids"].size(0)), device=engine.device),
        ]
    )


def _save_hf(engine, tokenizer, zero_stage: int, rank: int, history: list[dict]) -> str | None:
    """All ranks call this (ZeRO-3 gathers layer by layer); rank 0 writes an HF folder."""
    if zero_stage == 3:
        state = engine._zero3_consolidated_16bit_state_dict()
    else:
        state = engine.module.state_dict() if rank == 0 else None
    if rank != 0:
        return None
    out = tempfile.mkdtemp(prefix="agentray-ckpt-")
    engine.module.save_pretrained(out, state_dict=state)
    tokenizer.save_pretrained(out)
    with open(Path(out) / METRICS_FILE, "w") as f:
        f.writelines(json.dumps(row) + "\n" for row in history)
    return out


def _report(metrics: dict[str, Any], ckpt_dir: str | None) -> None:
    import ray.train

    checkpoint = ray.train.Checkpoint.from_directory(ckpt_dir) if ckpt_dir else None
    ray.train.report(metrics, checkpoint=checkpoint)
    if ckpt_dir:
        shutil.rmtree(ckpt_dir, ignore_errors=True)


def train_loop_per_worker(loop: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    import ray.train
    import torch
    from transformers import AutoTokenizer

    cfg = TrainConfig.model_validate(loop["cfg"])
    total, steps_per_epoch = loop["total_steps"], loop["steps_per_epoch"]
    rank = ray.train.get_context().get_world_rank()
    if not cfg.use_gpu:
        _skip_cpu_shm_build()
    torch.manual_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(loop["model_path"])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    engine = _build_engine(cfg, loop["model_path"], loop["ds_config"], total)
    shard = ray.train.get_dataset_shard("train")
    history: list[dict[str, Any]] = []
    # Live per-step lines where the output folder is visible (same node or shared storage);
    # the driver gets the full history from the final checkpoint either way.
    loop["live_metrics"] = rank == 0 and Path(loop["metrics_path"]).parent.is_dir()

    step, epoch, t0 = 0, 0, time.perf_counter()
    while step < total:
        epoch_steps = 0
        for acc, lr in _optimizer_steps(engine, shard, cfg, pad_id, epoch):
            now = time.perf_counter()
            step, epoch_steps = step + 1, epoch_steps + 1
            history.append(_step_metrics(acc, step, epoch, lr, now - t0))
            t0 = now
            _after_step(engine, tokenizer, cfg, loop, rank, history)
            if step == total or epoch_steps == steps_per_epoch:
                break
        if epoch_steps == 0:
            raise RuntimeError(f"rank {rank}: epoch {epoch} yielded no full batch")
        epoch += 1


def _optimizer_steps(engine, shard, cfg: TrainConfig, pad_id: int, epoch: int):
    """Yields (summed step stats over all ranks, lr) after each optimizer step."""
    import torch
    import torch.distributed as dist

    acc = torch.zeros(5, device=engine.device)
    batches = shard.iter_torch_batches(
        batch_size=cfg.micro_batch_size,
        collate_fn=PadCollate(pad_id, cfg.max_seq_len),
        drop_last=True,
        local_shuffle_buffer_size=cfg.shuffle_buffer_rows if cfg.shuffle else None,
        local_shuffle_seed=cfg.seed + epoch if cfg.shuffle else None,
    )
    for micro, batch in enumerate(batches, start=1):
        lr = engine.get_lr()[0]  # the rate this step uses; the scheduler moves in step()
        acc += _micro_step(engine, batch)
        if micro % cfg.gradient_accumulation_steps == 0:
            dist.all_reduce(acc)
            yield acc.tolist(), lr
            acc.zero_()


def _after_step(engine, tokenizer, cfg: TrainConfig, loop: dict, rank: int, history: list) -> None:
    """Log (rank 0), checkpoint and report. Every rank takes the same branches."""
    row = history[-1]
    step, total = row["step"], loop["total_steps"]
    last = step == total
    if loop["live_metrics"]:
        with open(loop["metrics_path"], "a") as f:
            f.write(json.dumps(row) + "\n")
    if rank == 0 and loop["progress"] and (step % cfg.log_every_steps == 0 or last):
        # not print(): Ray Train's patched print would emit every line twice
        sys.stdout.write(_progress_line(row, total) + "\n")
        sys.stdout.flush()
    save = last or bool(cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0)
    ckpt = _save_hf(engine, tokenizer, cfg.zero_stage, rank, history) if save else None
    # Reported at the log cadence, not every step: each report is a driver log line per rank.
    if save or step % cfg.log_every_steps == 0:
        _report(row, ckpt)


def _step_metrics(acc: list[float], step: int, epoch: int, lr: float, seconds: float) -> dict:
    loss_sum, n_loss, tokens, padded, sequences = acc
    return {
        "step": step,
        "epoch": epoch,
        "loss": loss_sum / max(n_loss, 1.0),
        "lr": lr,
        "sequences": int(sequences),
        "loss_tokens": int(n_loss),
        "tokens": int(tokens),
        "padded_tokens": int(padded),
        "step_s": seconds,
        "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
        "padded_tokens_per_s": padded / seconds if seconds > 0 else 0.0,
    }


def _progress_line(row: dict[str, Any], total: int) -> str:
    return (
        f"[train] step {row['step']}/{total} epoch {row['epoch']} loss {row['loss']:.4f} "
        f"lr {row['lr']:.2e} tok/s {row['tokens_per_s']:.0f}"
    )


# ---------------------------------------------------------------------------- driver


def run_train(cfg: TrainConfig, run_dir: Path, progress: bool = True) -> dict[str, Any]:
    """Train ``cfg.model`` on the tokenized shards; the HF model lands in ``<output>/model``."""
    import ray.data
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from agentray.manifest import write_manifest
    from agentray.model.tiny import resolve_model
    from agentray.ray_utils import ensure_ray

    started = time.time()
    run_dir = Path(run_dir).resolve()
    data_dir = Path(cfg.data or run_dir / "process" / "train").resolve()
    out_dir = Path(cfg.output or run_dir / "train").resolve()
    if next(data_dir.rglob("*.parquet"), None) is None:
        raise FileNotFoundError(f"no parquet shards in {data_dir}; run the process stage first")
    out_dir.mkdir(parents=True, exist_ok=True)
    ensure_ray()
    model_path = resolve_model(cfg.model)

    ds = ray.data.read_parquet(str(data_dir)).select_columns(["input_ids", "labels"])
    ds.context.enable_progress_bars = False  # this dataset's own context; the line says enough
    if cfg.cache_dataset:
        ds = ds.materialize()  # else every epoch reads the files again (seconds per epoch)
    num_rows = ds.count()
    total, steps_per_epoch = plan_steps(num_rows, cfg)
    if cfg.shuffle:
        # Block order + a buffer in each worker: no all-to-all shuffle every epoch.
        ds = ds.randomize_block_order(seed=cfg.seed)
    metrics_path = out_dir / "metrics.jsonl"
    metrics_path.unlink(missing_ok=True)

    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "cfg": cfg.model_dump(mode="json"),
            "model_path": model_path,
            "ds_config": deepspeed_config(cfg),
            "total_steps": total,
            "steps_per_epoch": steps_per_epoch,
            "metrics_path": str(metrics_path),
            "progress": progress,
        },
        scaling_config=ScalingConfig(
            num_workers=cfg.num_workers,
            use_gpu=cfg.use_gpu,
            resources_per_worker=cfg.resources_per_worker,
        ),
        datasets={"train": ds},
        run_config=RunConfig(
            storage_path=str(out_dir / "ray_results"),
            name=cfg.run_name or time.strftime("train-%Y%m%d-%H%M%S"),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
        ),
    )
    fit_start = time.perf_counter()
    result = trainer.fit()
    fit_s = time.perf_counter() - fit_start
    model_dir = _export_model(result.checkpoint, out_dir)
    history = _read_history(model_dir, metrics_path)
    plot_loss(history, out_dir / "loss.png")
    summary = _summary(history, model_dir, fit_s, started)
    write_manifest(
        out_dir,
        "train",
        cfg,
        inputs={"data": str(data_dir), "rows": num_rows, "model": model_path},
        counts={k: v for k, v in summary.items() if k != "model_dir"}
        | {"planned_steps": total, "steps_per_epoch": steps_per_epoch},
        outputs={
            "model": str(model_dir),
            "metrics": str(metrics_path),
            "loss_plot": str(out_dir / "loss.png"),
            "ray_results": str(out_dir / "ray_results"),
        },
        started_at=started,
    )
    return summary


def _export_model(checkpoint, out_dir: Path) -> Path:
    if checkpoint is None:
        raise RuntimeError("training finished without a checkpoint")
    model_dir = out_dir / "model"
    tmp = out_dir / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    checkpoint.to_directory(str(tmp))
    shutil.rmtree(model_dir, ignore_errors=True)
    tmp.rename(model_dir)
    return model_dir


def _read_history(model_dir: Path, metrics_path: Path) -> list[dict[str, Any]]:
    """The checkpoint's copy is authoritative (rank 0 may run on another node); it also
    becomes ``<output>/metrics.jsonl``."""
    carried = model_dir / METRICS_FILE
    shutil.move(carried, metrics_path)
    return [json.loads(line) for line in metrics_path.read_text().splitlines() if line]


def _summary(history: list[dict], model_dir: Path, fit_s: float, started: float) -> dict:
    # Step 1 includes warm-up (first batches, lazy init); leave it out of throughput.
    timed = history[1:] or history
    seconds = sum(r["step_s"] for r in timed)
    tokens = sum(r["tokens"] for r in timed)
    padded = sum(r["padded_tokens"] for r in timed)
    return {
        "steps": len(history),
        "first_loss": history[0]["loss"],
        "last_loss": history[-1]["loss"],
        "tokens": sum(r["tokens"] for r in history),
        "tokens_per_s": tokens / seconds if seconds else 0.0,
        "padded_tokens_per_s": padded / seconds if seconds else 0.0,
        "train_loop_s": sum(r["step_s"] for r in history),
        "fit_s": fit_s,
        "wall_s": time.time() - started,
        "model_dir": str(model_dir),
    }


def plot_loss(history: list[dict[str, Any]], path: Path) -> Path:
    """Loss per step plus a moving average."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in history]
    losses = [r["loss"] for r in history]
    window = max(1, len(losses) // 10)
    smooth = [
        sum(losses[max(0, i - window + 1) : i + 1]) / len(losses[max(0, i - window + 1) : i + 1])
        for i in range(len(losses))
    ]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, losses, alpha=0.35, label="loss")
    ax.plot(steps, smooth, label=f"moving mean ({window})")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean over loss tokens)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
