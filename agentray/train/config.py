"""Train-stage config: which model and data, how many Ray Train workers, the DeepSpeed ZeRO
stage, and the optimisation schedule."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentray.model.tiny import TINY_MODEL


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(TINY_MODEL, description="HF name or path of the model to fine-tune")
    data: str | None = Field(
        None, description="folder of tokenized parquet shards; default: <run_dir>/process/train"
    )
    output: str | None = Field(None, description="default: <run_dir>/train")
    run_name: str | None = Field(
        None, description="Ray Train run name under <output>/ray_results; default: timestamped"
    )

    num_workers: int = Field(2, gt=0, description="Ray Train workers (data-parallel ranks)")
    use_gpu: bool = Field(False, description="one GPU per worker")
    resources_per_worker: dict[str, float] | None = Field(
        None, description='Ray resources per worker, e.g. {"CPU": 4, "GPU": 1}'
    )
    zero_stage: Literal[0, 2, 3] = Field(
        2,
        description="DeepSpeed ZeRO stage (0: plain data parallel; 2: shard optimizer + grads; "
        "3: also shard parameters)",
    )
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16 mixed precision is meant for GPUs"
    )
    deepspeed: dict[str, Any] = Field(
        default_factory=dict,
        description="keys merged over the ZeRO template, e.g. "
        '{"zero_optimization": {"offload_optimizer": {"device": "cpu"}}}',
    )
    gradient_checkpointing: bool = Field(False, description="trade compute for activation memory")

    epochs: int = Field(1, gt=0, description="passes over the data")
    max_steps: int | None = Field(None, gt=0, description="cap on optimizer steps")
    micro_batch_size: int = Field(8, gt=0, description="sequences per worker per forward pass")
    gradient_accumulation_steps: int = Field(
        1, gt=0, description="micro-batches per optimizer step"
    )
    lr: float = Field(5e-4, gt=0, description="peak learning rate (AdamW)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW decay on matrices only")
    warmup_ratio: float = Field(0.03, ge=0, le=1, description="share of steps spent warming up")
    lr_schedule: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="decay after warm-up"
    )
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping")
    max_seq_len: int = Field(1024, gt=1, description="longer rows are truncated")
    shuffle: bool = Field(
        True, description="seeded shuffle: block order plus a per-worker buffer of rows"
    )
    shuffle_buffer_rows: int = Field(1000, gt=0, description="rows in each worker's buffer")
    cache_dataset: bool = Field(
        True, description="hold the rows in Ray's object store across epochs (spills to disk)"
    )
    seed: int = Field(0, description="torch, DeepSpeed and shuffle seed")

    log_every_steps: int = Field(
        10, gt=0, description="progress line and ray.train.report every N steps"
    )
    checkpoint_every_steps: int | None = Field(
        None, gt=0, description="also save an HF checkpoint every N steps (default: at the end)"
    )
    keep_checkpoints: int = Field(
        2, gt=0, description="checkpoints kept under <output>/ray_results (newest first)"
    )

    def global_batch_size(self) -> int:
        """Sequences per optimizer step across all workers."""
        return self.num_workers * self.micro_batch_size * self.gradient_accumulation_steps
