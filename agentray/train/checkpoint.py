"""Checkpoints that serve and resume: one Ray Train checkpoint folder holds

- the HF model (``from_pretrained``-loadable, tokenizer included; with LoRA the merged full
  model plus the adapter alone under ``adapter/``), written by rank 0;
- ``deepspeed/``: every rank's engine state (weights, optimizer and scheduler state; a
  file per rank under ZeRO; one torch file with ``train.engine: torch``), for an exact
  resume;
- ``train_state.json`` (where the next step starts) and ``train_metrics.jsonl`` (history).

Each rank saves into a local folder and reports it; Ray Train merges the ranks' folders
into one checkpoint in storage. On a restart, ``ray.train.get_checkpoint()`` returns the
latest and every rank loads its part.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from agentray import storage
from agentray.train.config import TrainConfig

DEEPSPEED_DIR = "deepspeed"
DEEPSPEED_TAG = "state"
STATE_FILE = "train_state.json"
METRICS_FILE = "train_metrics.jsonl"  # per-step history carried inside the checkpoint
ADAPTER_DIR = "adapter"


def save_checkpoint(
    engine, tokenizer, cfg: TrainConfig, rank: int, state: dict[str, Any], history: list[dict]
) -> str:
    """All ranks call this (ZeRO gathers and DeepSpeed saves are collective); returns this
    rank's local folder, to report and then delete."""
    out = Path(tempfile.mkdtemp(prefix="agentray-ckpt-"))
    engine.save_checkpoint(str(out / DEEPSPEED_DIR), tag=DEEPSPEED_TAG)
    weights = _full_state_dict(engine, cfg.zero_stage, rank)
    if rank == 0:
        if cfg.lora.enabled:
            _save_merged_lora(engine.module, weights, out)
        else:
            engine.module.save_pretrained(out, state_dict=weights)
        tokenizer.save_pretrained(out)
        (out / STATE_FILE).write_text(json.dumps(state))
        with open(out / METRICS_FILE, "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in history)
    return str(out)


def _full_state_dict(engine, zero_stage: int, rank: int):
    if zero_stage == 3:  # gathered layer by layer onto rank 0's CPU
        return engine._zero3_consolidated_16bit_state_dict()
    return engine.module.state_dict() if rank == 0 else None


def _save_merged_lora(peft_model, weights: dict[str, Any], out: Path) -> None:
    """The adapter alone under ``adapter/`` and the merged full model at the top.

    Merging happens on a CPU copy built on the meta device and filled with the gathered
    weights (copied: merging writes into the base weights, which on CPU would otherwise be
    the ones still training), so the base model is never loaded from disk again.
    """
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    config = peft_model.get_base_model().config
    with torch.device("meta"):
        skeleton = get_peft_model(
            AutoModelForCausalLM.from_config(config), peft_model.peft_config["default"]
        )
    copied = {key: value.detach().to("cpu", copy=True) for key, value in weights.items()}
    skeleton.load_state_dict(copied, assign=True, strict=True)
    if getattr(config, "tie_word_embeddings", False):
        skeleton.get_base_model().tie_weights()  # the copies above untied them
    skeleton.save_pretrained(out / ADAPTER_DIR)
    skeleton.merge_and_unload().save_pretrained(out)


def restore_checkpoint(engine, rank: int) -> dict[str, Any] | None:
    """Load the latest reported checkpoint into ``engine``; returns its train state (with
    the step history on rank 0), or None on a fresh start."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as folder:
        root = Path(folder)
        state = json.loads((root / STATE_FILE).read_text())
        path, _ = engine.load_checkpoint(str(root / DEEPSPEED_DIR), tag=DEEPSPEED_TAG)
        if path is None:
            raise RuntimeError(
                f"rank {rank}: no {type(engine).__name__} state in checkpoint "
                f"{checkpoint.path}/{DEEPSPEED_DIR} (a checkpoint resumes with the "
                "train.engine that wrote it)"
            )
        state["history"] = read_history(root / METRICS_FILE) if rank == 0 else []
    return state


def read_history(path: Path) -> list[dict[str, Any]]:
    return parse_history(Path(path).read_text())


def parse_history(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line]


def export_model(checkpoint, model_dir: str) -> tuple[dict[str, Any], list[dict]]:
    """Publish the checkpoint's HF model (not its DeepSpeed state nor the train state) at
    ``model_dir``, a local path or URI, straight from the checkpoint's storage; returns
    (train state, history)."""
    import pyarrow.fs as pafs

    if checkpoint is None:
        raise RuntimeError("training finished without a checkpoint")
    fs, root = checkpoint.filesystem, checkpoint.path.rstrip("/")
    state = json.loads(_read_text(fs, f"{root}/{STATE_FILE}"))
    history = parse_history(_read_text(fs, f"{root}/{METRICS_FILE}"))
    skip = {DEEPSPEED_DIR, STATE_FILE, METRICS_FILE}
    entries = [
        info
        for info in fs.get_file_info(pafs.FileSelector(root))
        if storage.name(info.path) not in skip
    ]
    if storage.is_uri(model_dir):  # an object store shows objects only once uploaded
        storage.remove(model_dir)
        _copy_entries(fs, entries, model_dir)
    else:
        with storage.staged_dir(model_dir) as tmp:
            _copy_entries(fs, entries, str(tmp))
    return state, history


def _read_text(fs, path: str) -> str:
    with fs.open_input_stream(path) as f:
        return f.read().decode("utf-8")


def _copy_entries(source_fs, entries: list, target: str) -> None:
    import pyarrow.fs as pafs

    target_fs, root = storage.filesystem(target)
    for info in entries:
        destination = f"{root}/{storage.name(info.path)}"
        if info.type == pafs.FileType.Directory and isinstance(target_fs, pafs.LocalFileSystem):
            Path(destination).mkdir(parents=True)  # copy_files fills a folder, never creates it
        pafs.copy_files(
            info.path,
            destination,
            source_filesystem=source_fs,
            destination_filesystem=target_fs,
            use_threads=True,
        )


def checkpoint_location(checkpoint, storage_path: str) -> str:
    """Ray Train's checkpoint path is relative to its filesystem: put the scheme back."""
    if storage.is_uri(storage_path):
        return f"{storage_path.split('://', 1)[0]}://{checkpoint.path}"
    return checkpoint.path
