"""The train stage: Ray Train's TorchTrainer runs DeepSpeed (ZeRO 0/2/3) on every worker,
or one rank's plain torch loop (``train.engine``, ``torch_engine.py``).

The driver reads the tokenized shards with Ray Data (one example per row, or packs of
several: told apart by their columns), plans the number of optimizer steps, and starts
``num_workers`` workers; each streams its share of rows through ``get_dataset_shard`` and
trains. Checkpoints (HF model + every rank's engine state, see ``checkpoint.py``) go
through ``ray.train.report`` to Ray Train's storage (``<output>/ray_results``: a local
path, or a URI when the run is on an object store); when a worker dies, Ray Train restarts
the group (``max_failures``) and every rank resumes from the latest checkpoint's step. The
driver publishes the final HF model at ``<output>/model``. With ``train.loss: dpo`` the rows
are preference pairs and each step's loss is DPO's against a frozen reference
(``preference.py``); the loop sees either through ``objective.py``. Every run artifact goes through ``agentray.storage``; models given
as URIs are fetched on the node that loads them.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from agentray import storage
from agentray.train.batches import (
    IGNORE_INDEX,
    PadCollate,
    attention_pairs,
    examples_in,
    real_tokens,
    training_dataset,
)
from agentray.train.checkpoint import (
    METRICS_FILE,
    checkpoint_location,
    export_model,
    restore_checkpoint,
    save_checkpoint,
)
from agentray.train.config import TrainConfig
from agentray.train.engine import (
    ZERO_CONFIG_DIR,
    deepspeed_config,
    use_torch_engine,
    worker_env_vars,
)
from agentray.train.metrics import (
    METRICS_JSONL,
    TENSORBOARD_DIR,
    plot_loss,
    publish_metrics,
    run_summary,
)
from agentray.train.objective import final_loss_all_ranks, make_objective

__all__ = [
    "IGNORE_INDEX",
    "METRICS_FILE",
    "ZERO_CONFIG_DIR",
    "PadCollate",
    "deepspeed_config",
    "plan_steps",
    "plot_loss",
    "run_train",
    "train_loop_per_worker",
]

# Summed over micro-batches and ranks each optimizer step ("sequences": examples, however
# many packs they came in), after the objective's own (``Objective.stat_names``).
SHARED_STAT_NAMES = ("tokens", "padded_tokens", "sequences", "model_flops")


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


# ---------------------------------------------------------------------------- worker


class _Run:
    """One worker's view of the run: where it stands, its engine, and what it logs."""

    def __init__(self, loop: dict[str, Any]) -> None:
        import ray
        import ray.train
        import torch
        import torch.distributed as dist
        from transformers import AutoTokenizer

        from agentray.model.tiny import resolve_model
        from agentray.train.engine import build_engine, resolve_attn_implementation
        from agentray.train.metrics import FlopsModel, device_peak_tflops

        self.loop = loop
        cfg = TrainConfig.model_validate(loop["cfg"])
        packs = cfg.dpo.packing if cfg.loss == "dpo" else loop["packed"]
        attn = resolve_attn_implementation(cfg, packs)  # once, for the engine and the reference
        self.cfg = cfg = cfg.model_copy(update={"attn_implementation": attn})
        self.total, self.steps_per_epoch = loop["total_steps"], loop["steps_per_epoch"]
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        torch.manual_seed(cfg.seed)
        self.tokenizer = AutoTokenizer.from_pretrained(resolve_model(loop["tokenizer_path"]))
        model_path = resolve_model(loop["model_path"])
        self.engine = build_engine(cfg, model_path, loop["ds_config"], self.total)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.objective = make_objective(cfg, model_path, loop["ds_config"], self.engine.device)
        self.collate = self.objective.collate(loop["packed"], pad_id, cfg.max_seq_len, attn)
        self.flops = FlopsModel(self.engine.module)
        self.peak_tflops = device_peak_tflops(cfg.use_gpu, cfg.peak_tflops)
        nodes: list[Any] = [None] * self.world
        dist.all_gather_object(nodes, ray.get_runtime_context().get_node_id())
        self._start(nodes)

    def _start(self, nodes: list[str]) -> None:
        """Fresh, or from the latest checkpoint after a restart."""
        restored = restore_checkpoint(self.engine, self.rank)
        if restored is None:
            self.step, self.epoch, self.epoch_step = 0, 0, 0
            self.history: list[dict[str, Any]] = []
            self.resumed_from: list[int] = []
        else:
            self.step, self.epoch = restored["step"], restored["epoch"]
            self.epoch_step, self.history = restored["epoch_step"], restored["history"]
            self.resumed_from = [*restored["resumed_from_steps"], self.step]
        self.worker_nodes = nodes
        # Live per-step metrics; the driver gets the full history from the final checkpoint.
        self.logs = None
        if self.rank == 0:
            from agentray.train.metrics import LiveLogs

            self.logs = LiveLogs(
                self.loop["out_dir"], self.history, self.cfg.tensorboard, self.step + 1
            )
        if self.rank == 0 and self.resumed_from and self.loop["progress"]:
            _say(f"[train] resumed from the checkpoint of step {self.step}/{self.total}")

    def state(self) -> dict[str, Any]:
        """Where the next step starts (an epoch that just finished counts as the next)."""
        epoch, epoch_step = self.epoch, self.epoch_step
        if epoch_step == self.steps_per_epoch:
            epoch, epoch_step = epoch + 1, 0
        return {
            "step": self.step,
            "epoch": epoch,
            "epoch_step": epoch_step,
            "total_steps": self.total,
            "resumed_from_steps": self.resumed_from,
            "worker_nodes": self.worker_nodes,
            "attn_implementation": self.cfg.attn_implementation,
        }


def train_loop_per_worker(loop: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    import ray.train

    run = _Run(loop)
    shard = ray.train.get_dataset_shard("train")
    while run.step < run.total:
        if run.epoch_step == run.steps_per_epoch:
            run.epoch, run.epoch_step = run.epoch + 1, 0
        steps_this_pass = 0
        t0 = time.perf_counter()
        for stats, lr, grad_norm, final_loss in _optimizer_steps(run, shard):
            step_s = time.perf_counter() - t0
            run.step, run.epoch_step = run.step + 1, run.epoch_step + 1
            steps_this_pass += 1
            run.history.append(_step_metrics(run, stats, lr, grad_norm, step_s))
            if final_loss is not None:
                run.history[-1]["final_loss"] = final_loss
            _after_step(run)
            if run.step == run.total or run.epoch_step == run.steps_per_epoch:
                break
            t0 = time.perf_counter()  # checkpoint and report time stay out of step_s
        if steps_this_pass == 0:
            raise RuntimeError(f"rank {run.rank}: epoch {run.epoch} yielded no full batch")
        if run.epoch_step < run.steps_per_epoch and run.step < run.total:
            run.epoch_step = run.steps_per_epoch  # this worker's shard ran out: next epoch
    if run.logs is not None:
        run.logs.close()


def _optimizer_steps(run: _Run, shard):
    """Yields (stats summed over all ranks, lr, grad norm, final loss) after each optimizer
    step; the final loss, after the last step only, is the loss of the weights it leaves (the
    saved ones) on that step's batches: the step's own loss is that of the weights before it.
    After a restart mid-epoch, the micro-batches the checkpoint had already trained on are
    skipped so the epoch keeps its length."""
    import torch.distributed as dist

    cfg, engine = run.cfg, run.engine
    acc = None
    batches = shard.iter_torch_batches(
        batch_size=cfg.micro_batch_size,
        collate_fn=run.collate,
        drop_last=True,
        local_shuffle_buffer_size=cfg.shuffle_buffer_rows if cfg.shuffle else None,
        local_shuffle_seed=cfg.seed + run.epoch if cfg.shuffle else None,
    )
    skip = run.epoch_step * cfg.gradient_accumulation_steps
    last_batches: list[dict[str, Any]] = []
    for index, batch in enumerate(batches):
        if index < skip:
            continue
        lr = engine.get_lr()[0]  # the rate this step uses; the scheduler moves in step()
        last = run.step + 1 == run.total
        stats, boundary, grad_norm = _micro_step(run, batch)
        last_batches += [batch] if last else []
        acc = stats if acc is None else acc + stats
        if boundary:
            dist.all_reduce(acc)
            final_loss = (
                final_loss_all_ranks(run.objective, run.engine, last_batches) if last else None
            )
            yield acc.tolist(), lr, grad_norm, final_loss
            acc = None


def _micro_step(run: _Run, batch: dict[str, Any]):
    """Forward + backward (+ the optimizer step at the accumulation boundary) on one
    micro-batch; returns (its stats, whether it ended a step, the grad norm if so)."""
    import torch

    engine = run.engine
    batch = {k: v.to(engine.device) for k, v in batch.items()}
    loss, values = run.objective.step_values(engine, batch)
    engine.backward(loss)
    boundary = engine.is_gradient_accumulation_boundary()
    own_norm = _grad_norm(engine) if boundary and _norm_not_kept(run) else None
    engine.step()
    grad_norm = None
    if boundary:
        kept = engine.get_global_grad_norm()
        grad_norm = float(kept) if kept is not None else own_norm
    tokens = float(real_tokens(batch))
    values += [
        tokens,
        float(batch["input_ids"].numel()),
        float(examples_in(batch)),
        run.flops.flops(tokens, float(attention_pairs(batch))),
    ]
    return torch.tensor(values, dtype=torch.float64, device=engine.device), boundary, grad_norm


def _norm_not_kept(run: _Run) -> bool:
    # DeepSpeed's plain fp32 data parallel (ZeRO-0) clips without keeping the norm.
    if getattr(run.engine, "keeps_grad_norm", False):
        return False
    return run.cfg.zero_stage == 0 and run.cfg.precision == "fp32"


def _grad_norm(engine) -> float:
    import torch

    norms = [
        p.grad.detach().float().norm() for p in engine.module.parameters() if p.grad is not None
    ]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


def _step_metrics(run: _Run, stats: list[float], lr: float, grad_norm, seconds: float) -> dict:
    from agentray.train.metrics import mfu

    *own, tokens, padded, sequences, flops = stats
    per_s = (lambda x: x / seconds) if seconds > 0 else (lambda x: 0.0)
    return {
        "step": run.step,
        "epoch": run.epoch,
        **run.objective.row(own),
        "lr": lr,
        "grad_norm": grad_norm,
        "sequences": int(sequences),
        "tokens": int(tokens),
        "padded_tokens": int(padded),
        "step_s": seconds,
        "tokens_per_s": per_s(tokens),
        "padded_tokens_per_s": per_s(padded),
        "model_tflops_per_s": per_s(flops) / 1e12,
        "mfu": mfu(flops, seconds, run.world, run.peak_tflops),
    }


def _after_step(run: _Run) -> None:
    """Log (rank 0), checkpoint and report. Every rank takes the same branches."""
    import ray.train

    cfg, row = run.cfg, run.history[-1]
    step, last = row["step"], row["step"] == run.total
    if run.logs is not None:
        run.logs.add(row)
    if run.rank == 0 and run.loop["progress"] and (step % cfg.log_every_steps == 0 or last):
        _say(_progress_line(row, run.total))
    save = last or bool(cfg.checkpoint_every_steps and step % cfg.checkpoint_every_steps == 0)
    folder = (
        save_checkpoint(run.engine, run.tokenizer, cfg, run.rank, run.state(), run.history)
        if save
        else None
    )
    # Reported at the log cadence, not every step: each report is a driver log line per rank.
    if save or step % cfg.log_every_steps == 0:
        checkpoint = ray.train.Checkpoint.from_directory(folder) if folder else None
        ray.train.report(row, checkpoint=checkpoint)
        if run.logs is not None:
            run.logs.publish()
    if folder:
        shutil.rmtree(folder, ignore_errors=True)


def _say(line: str) -> None:
    # not print(): Ray Train's patched print would emit every line twice
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _progress_line(row: dict[str, Any], total: int) -> str:
    line = (
        f"[train] step {row['step']}/{total} epoch {row['epoch']} loss {row['loss']:.4f} "
        f"lr {row['lr']:.2e} tok/s {row['tokens_per_s']:.0f}"
    )
    if row["grad_norm"] is not None:
        line += f" gnorm {row['grad_norm']:.3f}"
    if row["mfu"] is not None:
        line += f" mfu {row['mfu']:.1%}"
    if "reward_accuracy" in row:
        line += f" margin {row['reward_margin']:.3f} acc {row['reward_accuracy']:.2f}"
    if "final_loss" in row:
        line += f" | final loss {row['final_loss']:.4f}"
    return line


# ---------------------------------------------------------------------------- driver


def run_train(cfg: TrainConfig, run_dir: str, progress: bool = True) -> dict[str, Any]:
    """Train ``cfg.model`` on the tokenized shards; the HF model lands in ``<output>/model``.
    ``run_dir``, ``cfg.data``, ``cfg.output`` and ``cfg.model`` may be local paths or URIs."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from agentray.manifest import write_manifest
    from agentray.model.tiny import model_source
    from agentray.ray_utils import ensure_ray

    started = time.time()
    run_dir = storage.absolute(run_dir)
    data_dir = storage.absolute(cfg.data or storage.join(run_dir, "process", "train"))
    out_dir = storage.absolute(cfg.output or storage.join(run_dir, "train"))
    dpo = cfg.loss == "dpo"
    if not dpo and not storage.list_files(data_dir, ".parquet"):
        raise FileNotFoundError(f"no parquet shards in {data_dir}; run the process stage first")
    storage.makedirs(out_dir)
    ensure_ray()
    model_path = model_source(cfg.model)
    tokenizer_path = _tokenizer_path(cfg, data_dir, model_path)

    if dpo:
        from agentray.train.preference import pairs_dataset

        ds, num_rows, data_inputs = pairs_dataset(cfg, tokenizer_path)
        packed = cfg.dpo.packing
    else:
        ds, packed, num_rows = training_dataset(data_dir, cfg)
        data_inputs = {"data": data_dir}
    total, steps_per_epoch = plan_steps(num_rows, cfg)
    if cfg.shuffle:
        # Block order + a buffer in each worker: no all-to-all shuffle every epoch.
        ds = ds.randomize_block_order(seed=cfg.seed)
    metrics_path = storage.join(out_dir, METRICS_JSONL)
    tensorboard_dir = storage.join(out_dir, TENSORBOARD_DIR)
    storage.remove(metrics_path)
    storage.remove(tensorboard_dir)
    storage_path = storage.absolute(cfg.storage_path or storage.join(out_dir, "ray_results"))

    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "cfg": cfg.model_dump(mode="json"),
            "model_path": model_path,
            "tokenizer_path": tokenizer_path,
            "ds_config": deepspeed_config(cfg),
            "packed": packed,
            "total_steps": total,
            "steps_per_epoch": steps_per_epoch,
            "out_dir": out_dir,
            "progress": progress,
        },
        scaling_config=ScalingConfig(
            num_workers=cfg.num_workers,
            use_gpu=cfg.use_gpu,
            resources_per_worker=cfg.resources_per_worker,
            placement_strategy=cfg.placement_strategy,
        ),
        datasets={"train": ds},
        dataset_config=_data_config(cfg),
        run_config=RunConfig(
            storage_path=storage_path,
            name=cfg.run_name or time.strftime("train-%Y%m%d-%H%M%S"),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            worker_runtime_env={"env_vars": worker_env_vars(os.environ)},
        ),
    )
    fit_start = time.perf_counter()
    result = trainer.fit()
    fit_s = time.perf_counter() - fit_start
    model_dir = storage.join(out_dir, "model")
    state, history = export_model(result.checkpoint, model_dir)
    outputs = publish_metrics(history, out_dir, cfg.tensorboard)
    checkpoint = checkpoint_location(result.checkpoint, storage_path)
    summary = run_summary(history, state, model_dir, fit_s, started) | {
        "packed": packed,
        "engine": "torch" if use_torch_engine(cfg) else "deepspeed",
        "checkpoint": checkpoint,
    }
    write_manifest(
        out_dir,
        "train",
        cfg,
        inputs={
            **data_inputs,
            "rows": num_rows,
            "packed": packed,
            "model": model_path,
            "tokenizer": tokenizer_path,
        },
        counts={k: v for k, v in summary.items() if k not in ("model_dir", "checkpoint")}
        | {"planned_steps": total, "steps_per_epoch": steps_per_epoch},
        outputs={"model": model_dir, **outputs, "checkpoint": checkpoint},
        started_at=started,
    )
    return summary


def _data_config(cfg: TrainConfig):
    """One worker reads the dataset itself: ``streaming_split`` would run a coordinator actor
    that takes a third of a core while the worker trains (2-core machine, packed run)."""
    from ray.train import DataConfig

    return DataConfig(datasets_to_split=[] if cfg.num_workers == 1 else "all")


def _tokenizer_path(cfg: TrainConfig, data_dir: str, model_path: str) -> str:
    """The process stage saves the tokenizer with the chat template its masks were made with
    next to the training set; the served model must carry that template."""
    if cfg.tokenizer:
        return cfg.tokenizer
    beside_data = storage.join(_parent(data_dir), "tokenizer")
    if storage.exists(storage.join(beside_data, "tokenizer_config.json")):
        return beside_data
    return model_path


def _parent(location: str) -> str:
    if storage.is_uri(location):
        return location.rstrip("/").rsplit("/", 1)[0]
    return str(Path(location).parent)
