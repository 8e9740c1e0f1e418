"""The train stage on an object store: run_dir on S3 (a real SeaweedFS server), the base
model read from a URI, and every artifact (checkpoints, the served model, metrics)
published to the bucket, nothing to a local folder named after the URI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_train import generates, tensorboard_scalars, write_fixture_shards

from agentray import storage
from agentray.model.templates import AGENTLM_CHAT_TEMPLATE
from agentray.train.config import TrainConfig

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def _stage_inputs(tiny_model_dir: str, run_dir: str, scratch: Path) -> str:
    """The process stage's outputs (shards + tokenizer) in the bucket, and the base model
    uploaded next to them; returns the model's URI."""
    from agentray.process.tokenize import load_tokenizer

    write_fixture_shards(tiny_model_dir, scratch / "train")  # 48 rows
    load_tokenizer(tiny_model_dir, "agentlm").save_pretrained(scratch / "tokenizer")
    storage.upload_dir(scratch / "train", storage.join(run_dir, "process", "train"))
    storage.upload_dir(scratch / "tokenizer", storage.join(run_dir, "process", "tokenizer"))
    model = storage.join(run_dir, "base-model")
    storage.upload_dir(tiny_model_dir, model)
    return model


def _no_uri_folders(*roots: Path) -> list[Path]:
    """Folders a URI taken for a relative path would make (``s3:/bucket/...``)."""
    return [p for root in roots for p in root.glob("s3:*")]


def test_train_on_s3_publishes_checkpoints_model_and_metrics(
    s3_bucket, tiny_model_dir, tmp_path, monkeypatch, ray_local
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agentray.model.tiny import resolve_model
    from agentray.train.trainer import run_train

    run_dir = storage.join(s3_bucket, "run")
    base = _stage_inputs(tiny_model_dir, run_dir, tmp_path / "scratch")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    cfg = TrainConfig(
        model=base,
        run_name="s3-run",
        num_workers=2,
        zero_stage=2,
        micro_batch_size=4,
        max_steps=4,
        lr=3e-3,
        max_seq_len=256,
        checkpoint_every_steps=2,
        keep_checkpoints=2,
        log_every_steps=2,
    )
    summary = run_train(cfg, run_dir, progress=False)
    out = storage.join(run_dir, "train")
    assert summary["steps"] == 4 and summary["model_dir"] == storage.join(out, "model")

    # Ray Train's checkpoints: in the bucket, each with every rank's DeepSpeed state
    results = storage.join(out, "ray_results", "s3-run")
    states = storage.list_files(results, "train_state.json")
    assert [json.loads(storage.read_text(s))["step"] for s in states] == [2, 4]
    last = states[-1].rsplit("/", 1)[0]
    optimizer = [f for f in storage.list_files(storage.join(last, "deepspeed")) if "optim" in f]
    assert len(optimizer) == 2  # one file per rank
    assert summary["checkpoint"] == last

    # the served model: HF weights + the process stage's tokenizer, no training state
    model_dir = storage.join(out, "model")
    names = {storage.name(f) for f in storage.list_files(model_dir)}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert not names & {"train_state.json", "train_metrics.jsonl"}
    assert not any("/deepspeed/" in f for f in storage.list_files(model_dir))
    local = resolve_model(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(local)
    assert tokenizer.chat_template == AGENTLM_CHAT_TEMPLATE
    assert generates(AutoModelForCausalLM.from_pretrained(local), tokenizer)

    # metrics, TensorBoard scalars (rank 0's, published at its reports), plot, manifest
    history = [
        json.loads(x) for x in storage.read_text(storage.join(out, "metrics.jsonl")).splitlines()
    ]
    assert [r["step"] for r in history] == [1, 2, 3, 4]
    storage.download_dir(storage.join(out, "tensorboard"), tmp_path / "tb")
    assert [s for s, _ in tensorboard_scalars(tmp_path / "tb")["train/loss"]] == [1, 2, 3, 4]
    assert storage.read_bytes(storage.join(out, "loss.png"))[:4] == b"\x89PNG"
    manifest = storage.read_json(storage.join(out, "manifest.json"))
    assert manifest["inputs"]["model"] == base  # handed to the workers as a URI
    assert manifest["inputs"]["tokenizer"] == storage.join(run_dir, "process", "tokenizer")
    assert manifest["outputs"]["model"] == model_dir

    assert _no_uri_folders(cwd, REPO) == []
