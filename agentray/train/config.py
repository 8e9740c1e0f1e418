"""Train-stage config: which model and data, how many Ray Train workers, the DeepSpeed ZeRO
stage, the optimisation schedule, LoRA, checkpoints and fault tolerance."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentray.model.tiny import TINY_MODEL


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="train LoRA adapters (peft) instead of all weights")
    r: int = Field(16, gt=0, description="adapter rank")
    alpha: float = Field(32.0, gt=0, description="adapter scale numerator (scale = alpha / r)")
    dropout: float = Field(0.05, ge=0, lt=1, description="dropout on the adapter input")
    target_modules: str | list[str] = Field(
        "all-linear",
        description='module names to adapt, e.g. ["q_proj", "v_proj"]; "all-linear": every '
        "linear layer but the output head",
    )


class DpoSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pairs: str | None = Field(
        None,
        description="path or URI of the preference pairs (prompt/chosen/rejected chat "
        "messages, as `agentray iterate` writes them): a .parquet or .jsonl file, or a folder "
        "of them (its parquet files when it has any, else its jsonl files)",
    )
    beta: float = Field(
        0.1, gt=0, description="strength of the pull towards the reference (the starting model)"
    )
    label_smoothing: float = Field(
        0.0,
        ge=0,
        lt=0.5,
        description="conservative DPO: the share of pairs assumed mislabelled (0: plain DPO)",
    )
    packing: bool = Field(
        True,
        description="pack each micro-batch's chosen and rejected sequences into "
        "train.max_seq_len rows, attention kept per sequence as for SFT packs (4D "
        "block-diagonal mask; flash-attention and sdpa_varlen: one row without padding); "
        "false: one right-padded row per sequence",
    )


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    loss: Literal["sft", "dpo"] = Field(
        "sft",
        description="sft: cross-entropy on the assistant tokens of the process stage's rows; "
        "dpo: Direct Preference Optimization on train.dpo.pairs against a frozen copy of "
        "the starting model (train.dpo.packing; micro_batch_size counts pairs)",
    )
    dpo: DpoSettings = Field(default_factory=DpoSettings)

    model: str = Field(
        TINY_MODEL,
        description="HF name, path or URI (s3://...: each worker downloads it) of the model "
        "to fine-tune",
    )
    data: str | None = Field(
        None,
        description="folder or URI of tokenized parquet shards; default: <run_dir>/process/train",
    )
    tokenizer: str | None = Field(
        None,
        description="tokenizer (and chat template) saved with the model; default: the one the "
        "process stage saved next to the data (<data>/../tokenizer), else the model's",
    )
    output: str | None = Field(None, description="a path or URI; default: <run_dir>/train")
    run_name: str | None = Field(
        None, description="Ray Train run name under <output>/ray_results; default: timestamped"
    )

    num_workers: int = Field(2, gt=0, description="Ray Train workers (data-parallel ranks)")
    use_gpu: bool = Field(False, description="one GPU per worker")
    resources_per_worker: dict[str, float] | None = Field(
        None, description='Ray resources per worker, e.g. {"CPU": 4, "GPU": 1}'
    )
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = Field(
        "PACK", description="how workers are placed over nodes (Ray placement group strategy)"
    )
    engine: Literal["auto", "deepspeed", "torch"] = Field(
        "auto",
        description="deepspeed: a DeepSpeed engine on every rank (ZeRO, offload); torch: a "
        "plain torch AdamW loop with the same schedule, accumulation and clipping (one rank "
        "only: with one rank ZeRO shards nothing); auto: torch for one worker without "
        "ZeRO-3, offload or a deepspeed config, else deepspeed",
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
    offload: Literal["none", "optimizer", "optimizer_and_params"] = Field(
        "none",
        description="ZeRO CPU offload for models that do not fit (70B-class): the optimizer "
        "states (ZeRO-2/3), or also the parameters (ZeRO-3); uses DeepSpeed's CPU Adam",
    )
    gradient_checkpointing: bool = Field(False, description="trade compute for activation memory")
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2", "sdpa_varlen"] = (
        Field(
            "auto",
            description="auto: flash_attention_2 on GPU when flash-attn is installed (packed "
            "rows run as one varlen row), else sdpa_varlen for packed rows and sdpa for "
            "padded ones; sdpa_varlen (packed rows only): the micro-batch's packs as one "
            "row without padding, sdpa on each example, so attention costs the sum of the "
            "examples' squared lengths, not the rows'; sdpa on packs: a 4D block-diagonal "
            "mask over each row (the full square)",
        )
    )
    lora: LoraSettings = Field(default_factory=LoraSettings)

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
    max_seq_len: int = Field(
        1024, gt=1, description="longer unpacked rows are cut; packed rows must fit (never cut)"
    )
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
        None,
        gt=0,
        description="also checkpoint every N steps (HF model + DeepSpeed state to resume from); "
        "default: at the end only",
    )
    keep_checkpoints: int = Field(2, gt=0, description="checkpoints kept in storage (newest)")
    storage_path: str | None = Field(
        None,
        description="Ray Train storage for checkpoints; on a multi-node cluster a path every "
        "node sees (NFS) or s3://...; default: <output>/ray_results",
    )
    max_failures: int = Field(
        2,
        ge=-1,
        description="restarts from the last checkpoint after a worker or node dies (-1: no limit)",
    )
    tensorboard: bool = Field(True, description="TensorBoard scalars in <output>/tensorboard")
    peak_tflops: float | None = Field(
        None,
        gt=0,
        description="peak dense bf16 TFLOP/s of one accelerator, for MFU; default: looked up "
        "from the GPU name (no MFU on CPU)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.offload == "optimizer" and self.zero_stage == 0:
            raise ValueError("offload='optimizer' needs zero_stage 2 or 3")
        if self.offload == "optimizer_and_params" and self.zero_stage != 3:
            raise ValueError("offload='optimizer_and_params' needs zero_stage 3")
        if self.engine == "torch" and (
            self.num_workers > 1 or self.zero_stage == 3 or self.offload != "none"
        ):
            raise ValueError(
                "engine='torch' is single-rank without ZeRO-3 or offload; use engine "
                "'deepspeed' (or 'auto') for num_workers > 1, zero_stage 3 or offload"
            )
        if self.attn_implementation == "flash_attention_2" and not (
            self.use_gpu and self.precision == "bf16"
        ):
            raise ValueError("attn_implementation='flash_attention_2' needs use_gpu and bf16")
        self._check_dpo()
        return self

    def _check_dpo(self) -> None:
        if self.loss == "sft":
            if self.dpo.pairs is not None:
                raise ValueError("train.dpo.pairs is set but train.loss is 'sft'; set loss: dpo")
            return
        if self.dpo.pairs is None:
            raise ValueError("train.loss 'dpo' needs train.dpo.pairs (a pairs parquet/jsonl)")
        if self.attn_implementation == "sdpa_varlen" and not self.dpo.packing:
            raise ValueError(
                "train.dpo.packing is false (padded rows); attn_implementation sdpa_varlen "
                "needs packs"
            )
        if self.zero_stage == 3:
            raise ValueError(
                "train.loss 'dpo' keeps a full reference model on every rank, which ZeRO-3 "
                "would not shard; use zero_stage 0 or 2"
            )

    def global_batch_size(self) -> int:
        """Sequences per optimizer step across all workers."""
        return self.num_workers * self.micro_batch_size * self.gradient_accumulation_steps
