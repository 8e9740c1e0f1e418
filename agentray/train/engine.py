"""The engine one Ray Train worker trains: DeepSpeed (ZeRO config) or, for one rank, the
plain torch engine of ``torch_engine.py``; model (optionally LoRA), optimizer and warm-up +
decay schedule."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentray.model.varlen import VARLEN_SDPA
from agentray.train.config import TrainConfig

ZERO_CONFIG_DIR = Path(__file__).resolve().parent / "zero_configs"
ADAM_BETAS = (0.9, 0.95)


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
    if cfg.offload != "none":
        cpu = {"device": "cpu", "pin_memory": True}
        ds["zero_optimization"]["offload_optimizer"] = cpu
        if cfg.offload == "optimizer_and_params":
            ds["zero_optimization"]["offload_param"] = dict(cpu)
    return _deep_merge(ds, cfg.deepspeed)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def resolve_attn_implementation(cfg: TrainConfig, packed: bool = False) -> str:
    """``auto``: flash-attention 2 on a GPU in bf16 when flash-attn is installed; else
    ``sdpa_varlen`` for packed rows (attention costs the examples' squared lengths, not the
    rows'), ``sdpa`` for padded ones."""
    if cfg.attn_implementation != "auto":
        return cfg.attn_implementation
    import torch

    flash = (
        cfg.use_gpu
        and cfg.precision == "bf16"
        and torch.cuda.is_available()
        and importlib.util.find_spec("flash_attn") is not None
    )
    if flash:
        return "flash_attention_2"
    return VARLEN_SDPA if packed else "sdpa"


def skip_cpu_shm_build() -> None:
    """DeepSpeed JIT-compiles a shared-memory comm op on CPU (slow, needs a compiler);
    gloo alone is correct, so skip it."""
    # import_module, not `import deepspeed.comm.torch as m`: that attribute path resolves to
    # the real torch module (deepspeed.comm re-exports it), and the patch would miss.
    ds_torch = importlib.import_module("deepspeed.comm.torch")
    ds_torch.build_shm_op = lambda: None


# libgomp's own spin count for an OpenMP thread waiting for work (GOMP_SPINCOUNT's default).
GOMP_DEFAULT_SPINCOUNT = "300000"


def worker_env_vars(environ: Mapping[str, str]) -> dict[str, str]:
    """Environment for the Ray Train workers. Ray Train runs the training function on a
    thread of its own, and libgomp counts a team started off the main thread one thread
    above the CPUs it may use, so it cuts its waiting threads' spin to 1,000 turns: they
    sleep and are woken by futex at every parallel region (thousands per step), ~5-10%
    of a CPU step. An explicit ``GOMP_SPINCOUNT`` (libgomp's default) gives the worker
    thread the spin a plain script's main thread has. A ``GOMP_SPINCOUNT`` or
    ``OMP_WAIT_POLICY`` in the driver's environment (or the job's runtime_env) is kept: the
    workers then inherit it."""
    if "GOMP_SPINCOUNT" in environ or "OMP_WAIT_POLICY" in environ:
        return {}
    return {"GOMP_SPINCOUNT": GOMP_DEFAULT_SPINCOUNT}


def use_torch_engine(cfg: TrainConfig) -> bool:
    """``train.engine`` resolved: ``auto`` is the plain torch engine for one rank that needs
    nothing only DeepSpeed gives (ZeRO-3 sharding, CPU offload, a custom DeepSpeed config)."""
    if cfg.engine != "auto":
        return cfg.engine == "torch"
    return (
        cfg.num_workers == 1 and cfg.zero_stage != 3 and cfg.offload == "none" and not cfg.deepspeed
    )


def build_engine(cfg: TrainConfig, model_path: str, ds_config: dict[str, Any], total_steps: int):
    """The torch engine (``torch_engine.py``) or a DeepSpeed one, as ``train.engine`` says."""
    if use_torch_engine(cfg):
        from agentray.train.torch_engine import build_torch_engine

        return build_torch_engine(cfg, model_path, total_steps)
    if not cfg.use_gpu:
        skip_cpu_shm_build()
    import deepspeed

    # Join the process group Ray Train set up (gloo / nccl) before anything reads the
    # world size from DeepSpeed, HfDeepSpeedConfig included.
    deepspeed.init_distributed(dist_backend="nccl" if cfg.use_gpu else "gloo")
    model = load_model(cfg, model_path, ds_config)
    optimizer = make_optimizer(cfg, model)

    def scheduler(ds_optimizer):  # built on DeepSpeed's wrapped optimizer, not ours
        return make_scheduler(cfg, ds_optimizer, total_steps)

    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config
    )
    return engine


def make_scheduler(cfg: TrainConfig, optimizer, total_steps: int):
    """Linear warm-up over ``warmup_ratio`` of the steps, then ``lr_schedule``."""
    from transformers import get_scheduler

    return get_scheduler(
        {"constant": "constant_with_warmup"}.get(cfg.lr_schedule, cfg.lr_schedule),
        optimizer,
        num_warmup_steps=math.ceil(cfg.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )


def load_model(cfg: TrainConfig, model_path: str, ds_config: dict[str, Any], dtype=None):
    """The HF model, with gradient checkpointing and LoRA adapters as configured; ``dtype``
    defaults to bf16 under ``precision: bf16``, else fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    hf_ds_config = None
    if cfg.zero_stage == 3 and importlib.util.find_spec("accelerate") is not None:
        # Kept alive while loading: from_pretrained then builds the model partitioned
        # (zero.Init) instead of materialising all weights on every rank. transformers
        # needs `accelerate` for this; without it each rank loads the full model first.
        from transformers.integrations import HfDeepSpeedConfig

        hf_ds_config = HfDeepSpeedConfig(ds_config)  # noqa: F841
    attn = resolve_attn_implementation(cfg)
    if attn == VARLEN_SDPA:
        from agentray.model.varlen import register

        register()
    model = AutoModelForCausalLM.from_pretrained(
        model_path,
        dtype=dtype or (torch.bfloat16 if cfg.precision == "bf16" else torch.float32),
        attn_implementation=attn,
    )
    model.config.use_cache = False
    if cfg.gradient_checkpointing:
        # transformers 5 renamed it; non-reentrant works with frozen inputs (LoRA)
        enable = getattr(model, "activation_checkpointing_enable", None)
        (enable or model.gradient_checkpointing_enable)({"use_reentrant": False})
    if cfg.lora.enabled:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(
            model,
            LoraConfig(
                task_type="CAUSAL_LM",
                r=cfg.lora.r,
                lora_alpha=cfg.lora.alpha,
                lora_dropout=cfg.lora.dropout,
                target_modules=cfg.lora.target_modules,
            ),
        )
    return model


def make_optimizer(cfg: TrainConfig, model, fused: bool = False):
    """AdamW with weight decay on matrices only, over the trainable parameters.

    A torch optimizer, not a config-named one: DeepSpeed's fused Adam is a JIT build. With
    CPU offload DeepSpeed requires its CPU Adam (also a JIT build, once per machine).
    ``fused``: torch's fused AdamW kernel (CPU and CUDA; the torch engine asks for it), one
    call over all parameters instead of a Python loop of ~10 ops per parameter.
    """
    import torch

    trainable = [p for p in model.parameters() if p.requires_grad]
    # ZeRO-3 partitioned params are flat: their real shape is in ds_shape.
    matrices = [p for p in trainable if len(getattr(p, "ds_shape", p.shape)) >= 2]
    vectors = [p for p in trainable if len(getattr(p, "ds_shape", p.shape)) < 2]
    groups = [
        {"params": matrices, "weight_decay": cfg.weight_decay},
        {"params": vectors, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if cfg.offload != "none":
        from deepspeed.ops.adam import DeepSpeedCPUAdam

        return DeepSpeedCPUAdam(groups, lr=cfg.lr, betas=ADAM_BETAS, adamw_mode=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=ADAM_BETAS, fused=fused or None)
