"""Per-step training metrics: model FLOPs and MFU, TensorBoard scalars, the loss plot, and
rank 0's live copy of them while training."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from agentray import storage

# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets; the first name that
# occurs in torch.cuda.get_device_name() wins, so more specific names come first.
PEAK_BF16_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100", 989.0),
    ("H200", 989.0),
    ("H800", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10", 125.0),
    ("MI300X", 1307.0),
)
METRICS_JSONL = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
TB_SCALARS = (
    "loss",
    "final_loss",
    "lr",
    "grad_norm",
    "tokens_per_s",
    "model_tflops_per_s",
    "mfu",
    # train.loss: dpo
    "reward_margin",
    "reward_accuracy",
    "reward_chosen",
    "reward_rejected",
)


def peak_tflops_for(device_name: str) -> float | None:
    """The bf16 peak of a GPU by its name; None when unknown (set train.peak_tflops)."""
    for name, tflops in PEAK_BF16_TFLOPS:
        if name.lower() in device_name.lower():
            return tflops
    return None


def device_peak_tflops(use_gpu: bool, configured: float | None) -> float | None:
    if configured is not None:
        return configured
    import torch

    if not use_gpu or not torch.cuda.is_available():
        return None
    return peak_tflops_for(torch.cuda.get_device_name())


class FlopsModel:
    """Model FLOPs of a decoder LM as in PaLM (appendix B): 6·N per trained token for the
    matmuls (forward + backward) plus 12·layers·hidden per query-key pair of attention.

    N counts the weights that do matmuls: the input embedding is a lookup, so it counts
    only when tied to the output head. Attention pairs are per example (packed examples do
    not attend to each other), so padding and cross-example pairs add nothing.
    """

    def __init__(self, model) -> None:
        config = model.config
        params = sum(_numel(p) for p in model.parameters())
        embedding = _numel(model.get_input_embeddings().weight)
        tied = bool(getattr(config, "tie_word_embeddings", False))
        self.matmul_params = params if tied else params - embedding
        self.layers = int(config.num_hidden_layers)
        self.hidden = int(config.hidden_size)

    def flops(self, tokens: float, attention_pairs: float) -> float:
        return (
            6.0 * self.matmul_params * tokens + 12.0 * self.layers * self.hidden * attention_pairs
        )


def _numel(param) -> int:
    # ZeRO-3 partitions parameters: the full size is in ds_numel
    return int(getattr(param, "ds_numel", param.numel()))


def mfu(
    model_flops: float, seconds: float, devices: int, peak_tflops: float | None
) -> float | None:
    """Achieved model FLOP/s over the devices' summed peak; None without a known peak."""
    if not peak_tflops or seconds <= 0:
        return None
    return model_flops / seconds / (devices * peak_tflops * 1e12)


class ScalarLog:
    """TensorBoard scalars (tensorboardX: already installed with ray[train]; the full
    tensorboard package is only needed to view them)."""

    def __init__(self, logdir: Path, first_step: int = 1) -> None:
        from tensorboardX import SummaryWriter

        # purge_step: a resumed run hides what an earlier attempt logged past its checkpoint
        self.writer = SummaryWriter(
            str(logdir), purge_step=first_step if first_step > 1 else None, flush_secs=10
        )

    def add(self, row: dict[str, Any]) -> None:
        for key in TB_SCALARS:
            value = row.get(key)
            if value is not None:
                self.writer.add_scalar(f"train/{key}", value, row["step"])

    def close(self) -> None:
        self.writer.close()


class LiveLogs:
    """Rank 0's ``metrics.jsonl`` and TensorBoard scalars while training.

    Written in place when the stage's output is a folder this node sees; else in a local
    temp folder, copied to the output at each ``publish`` when the output is a URI (when it
    is another node's disk, the driver writes both from the history at the end).
    """

    def __init__(
        self, out_dir: str, history: list[dict[str, Any]], tensorboard: bool, first_step: int
    ) -> None:
        in_place = not storage.is_uri(out_dir) and Path(out_dir).is_dir()
        self.out_dir, self.in_place = out_dir, in_place
        self.folder = Path(out_dir) if in_place else Path(tempfile.mkdtemp(prefix="agentray-logs-"))
        # a resumed run rewrites the file from the checkpoint: no steps twice
        self.metrics = self.folder / METRICS_JSONL
        self.metrics.write_text("".join(json.dumps(row) + "\n" for row in history))
        self.scalars = ScalarLog(self.folder / TENSORBOARD_DIR, first_step) if tensorboard else None

    def add(self, row: dict[str, Any]) -> None:
        with open(self.metrics, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.scalars is not None:
            self.scalars.add(row)

    def publish(self) -> None:
        if self.in_place or not storage.is_uri(self.out_dir):
            return
        storage.write_bytes(storage.join(self.out_dir, METRICS_JSONL), self.metrics.read_bytes())
        if self.scalars is not None:
            self.scalars.writer.flush()
            # a resumed run adds its own events file: TensorBoard purges past its first step
            storage.upload_dir(
                self.folder / TENSORBOARD_DIR, storage.join(self.out_dir, TENSORBOARD_DIR)
            )

    def close(self) -> None:
        if self.scalars is not None:
            self.scalars.close()
        self.publish()
        if not self.in_place:
            shutil.rmtree(self.folder, ignore_errors=True)


def write_tensorboard(history: list[dict[str, Any]], logdir: Path) -> None:
    log = ScalarLog(logdir)
    for row in history:
        log.add(row)
    log.close()


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


def publish_metrics(history: list[dict], out_dir: str, tensorboard: bool) -> dict[str, Any]:
    """The full history (from the final checkpoint) as metrics.jsonl, the loss plot, and
    TensorBoard scalars where rank 0 could not write them; returns their locations."""
    metrics_path = storage.join(out_dir, METRICS_JSONL)
    storage.write_text(metrics_path, "".join(json.dumps(row) + "\n" for row in history))
    plot_path = storage.join(out_dir, "loss.png")
    with tempfile.TemporaryDirectory(prefix="agentray-plot-") as tmp:
        storage.write_bytes(plot_path, plot_loss(history, Path(tmp) / "loss.png").read_bytes())
    tensorboard_dir = storage.join(out_dir, TENSORBOARD_DIR)
    if tensorboard and not storage.list_files(tensorboard_dir):
        with storage.staged_dir(tensorboard_dir) as tmp:
            write_tensorboard(history, tmp)
    return {
        "metrics": metrics_path,
        "loss_plot": plot_path,
        "tensorboard": tensorboard_dir if tensorboard else None,
    }


def run_summary(
    history: list[dict], state: dict[str, Any], model_dir: str, fit_s: float, started: float
) -> dict[str, Any]:
    """The run's figures for the manifest and the CLI, from the steps' metrics rows."""
    # Step 1 includes warm-up (first batches, lazy init); leave it out of throughput.
    timed = history[1:] or history
    seconds = sum(r["step_s"] for r in timed)
    tokens = sum(r["tokens"] for r in timed)
    padded = sum(r["padded_tokens"] for r in timed)
    mfus = [r["mfu"] for r in timed if r.get("mfu") is not None]
    return {
        "steps": len(history),
        "first_loss": history[0]["loss"],
        "last_loss": history[-1]["loss"],
        "final_loss": history[-1].get("final_loss"),
        "tokens": sum(r["tokens"] for r in history),
        "tokens_per_s": tokens / seconds if seconds else 0.0,
        "padded_tokens_per_s": padded / seconds if seconds else 0.0,
        "mfu": sum(mfus) / len(mfus) if mfus else None,
        "train_loop_s": sum(r["step_s"] for r in history),
        "fit_s": fit_s,
        "wall_s": time.time() - started,
        "resumed_from_steps": state["resumed_from_steps"],
        "worker_nodes": state["worker_nodes"],
        "attn_implementation": state.get("attn_implementation"),  # None: an older checkpoint
        "model_dir": model_dir,
    }
