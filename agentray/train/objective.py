"""What a training step minimises (``train.loss``), behind one interface, so the trainer's
loop has no branch on the loss: the SFT token loss here, DPO in ``preference.py``.

An objective collates a worker's Ray Data batches, gives each micro-batch's loss to
backpropagate with its stats (summed over micro-batches and ranks each optimizer step; the
first two are a loss sum and the count it is a mean over), and turns a step's summed stats
into the metrics row's loss entries.
"""

from __future__ import annotations

from typing import Any, Protocol

from ray.data.collate_fn import NumpyBatchCollateFn

from agentray.train.batches import forward_loss, make_collate
from agentray.train.config import TrainConfig


class Objective(Protocol):
    stat_names: tuple[str, ...]

    def collate(
        self, packed: bool, pad_id: int, max_seq_len: int, attn: str
    ) -> NumpyBatchCollateFn: ...

    def step_values(self, engine, batch: dict[str, Any]) -> tuple[Any, list[float]]: ...

    def row(self, stats: list[float]) -> dict[str, Any]: ...


class TokenLoss:
    """SFT: the mean cross-entropy over the micro-batch's label tokens."""

    stat_names = ("loss_sum", "loss_tokens")

    def collate(self, packed: bool, pad_id: int, max_seq_len: int, attn: str):
        return make_collate(packed, pad_id, max_seq_len, attn)

    def step_values(self, engine, batch: dict[str, Any]) -> tuple[Any, list[float]]:
        loss_sum, n_loss = forward_loss(engine, batch)
        # Mean over this micro-batch's loss tokens; DeepSpeed divides by the accumulation steps.
        return loss_sum / n_loss.clamp(min=1), [float(loss_sum.detach()), float(n_loss)]

    def row(self, stats: list[float]) -> dict[str, Any]:
        loss_sum, loss_tokens = stats
        return {"loss": loss_sum / max(loss_tokens, 1.0), "loss_tokens": int(loss_tokens)}


def make_objective(cfg: TrainConfig, model_path: str, ds_config: dict, device) -> Objective:
    """``train.loss``'s objective (DPO loads its frozen reference model onto ``device``)."""
    if cfg.loss == "dpo":
        from agentray.train.preference import PreferenceLoss, load_reference

        return PreferenceLoss(cfg, load_reference(cfg, model_path, ds_config, device))
    return TokenLoss()


def final_loss_all_ranks(objective: Objective, engine, batches: list[dict[str, Any]]) -> float:
    """The mean loss of the weights ``engine`` leaves over every rank's collated ``batches``
    (a collective: every rank calls it), in eval mode without gradients."""
    import torch
    import torch.distributed as dist

    sums = torch.zeros(2, dtype=torch.float64, device=engine.device)
    training = engine.training
    engine.eval()
    with torch.no_grad():
        for batch in batches:
            batch = {k: v.to(engine.device) for k, v in batch.items()}
            _, values = objective.step_values(engine, batch)
            sums += torch.tensor(values[:2], dtype=torch.float64, device=engine.device)
    engine.train(training)
    dist.all_reduce(sums)
    return float(sums[0] / sums[1].clamp(min=1))
