"""A plain torch engine for one rank: the DeepSpeed engine's interface (as the trainer and
``checkpoint.py`` use it) over a torch AdamW, the same warm-up + decay schedule, gradient
accumulation and clipping, and bf16 autocast under ``precision: bf16``.

With a single rank ZeRO shards nothing, yet DeepSpeed still flattens and copies every
gradient into its buckets each step and costs seconds to import and initialise; this engine
skips all of that (``train.engine``: ``auto`` picks it for one rank without ZeRO-3/offload).
Its checkpoint state (weights, optimizer, scheduler, micro-step count) is one file per tag.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from agentray.train.config import TrainConfig

STATE_FILE = "torch_state.pt"
FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # torch's fused AdamW kernel: packed step 1.4% less CPU


class TorchEngine:
    """What the trainer calls on a DeepSpeed engine, for one rank.

    ``backward`` divides the loss by the accumulation steps (as DeepSpeed does); ``step``
    counts micro-steps and, at the accumulation boundary, clips, steps the optimizer and the
    schedule, and zeroes the gradients.
    """

    keeps_grad_norm = True  # get_global_grad_norm() is always the step's norm

    def __init__(self, cfg: TrainConfig, model, optimizer, scheduler, device) -> None:
        self.module = model
        self.device = device
        self.optimizer, self.lr_scheduler = optimizer, scheduler
        self.gas = cfg.gradient_accumulation_steps
        self.max_grad_norm = cfg.max_grad_norm
        self.micro_steps = 0
        self._grad_norm: float | None = None
        self._autocast = cfg.precision == "bf16"

    # the model's face: forward, device, modes
    def __call__(self, *args, **kwargs):
        import torch

        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if self._autocast
            else contextlib.nullcontext()
        )
        with autocast:
            return self.module(*args, **kwargs)

    @property
    def training(self) -> bool:
        return self.module.training

    def train(self, mode: bool = True):
        self.module.train(mode)
        return self

    def eval(self):
        return self.train(False)

    # the optimizer's face
    def get_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def is_gradient_accumulation_boundary(self) -> bool:
        return (self.micro_steps + 1) % self.gas == 0

    def backward(self, loss) -> None:
        (loss / self.gas).backward()

    def step(self) -> None:
        import torch

        if self.is_gradient_accumulation_boundary():
            params = [p for p in self.module.parameters() if p.grad is not None]
            norm = torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
            self._grad_norm = float(norm)
            self.optimizer.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.micro_steps += 1

    def get_global_grad_norm(self) -> float | None:
        """The norm before clipping of the last optimizer step's gradients."""
        return self._grad_norm

    # checkpoints: the calls checkpoint.py makes on a DeepSpeed engine
    def save_checkpoint(self, folder: str, tag: str) -> None:
        import torch

        path = Path(folder) / tag
        path.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "module": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "lr_scheduler": self.lr_scheduler.state_dict(),
                "micro_steps": self.micro_steps,
            },
            path / STATE_FILE,
        )

    def load_checkpoint(self, folder: str, tag: str) -> tuple[str | None, dict]:
        """(the file loaded, {}) or (None, {}) when ``folder/tag`` has no torch state (e.g. a
        checkpoint a DeepSpeed run wrote)."""
        import torch

        path = Path(folder) / tag / STATE_FILE
        if not path.exists():
            return None, {}
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.micro_steps = state["micro_steps"]
        return str(path), {}


def build_torch_engine(cfg: TrainConfig, model_path: str, total_steps: int) -> TorchEngine:
    """The model in fp32 (autocast to bf16 when ``precision: bf16``: fp32 master weights, as
    DeepSpeed's bf16 mode keeps), AdamW (fused where torch has the kernel) and the schedule
    ``build_engine`` uses."""
    import torch

    from agentray.train.engine import load_model, make_optimizer, make_scheduler

    device = _device(cfg)
    model = load_model(cfg, model_path, {}, dtype=torch.float32).to(device)
    optimizer = make_optimizer(cfg, model, fused=device.type in FUSED_ADAMW_DEVICES)
    scheduler = make_scheduler(cfg, optimizer, total_steps)
    return TorchEngine(cfg, model, optimizer, scheduler, device)


def _device(cfg: TrainConfig):
    import torch

    if not cfg.use_gpu:
        return torch.device("cpu")
    import ray.train.torch

    return ray.train.torch.get_device()
