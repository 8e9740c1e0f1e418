"""The AgentLM presets validate and carry the paper's settings; train config rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from agentray.config import load_config
from agentray.train.config import TrainConfig
from agentray.train.engine import deepspeed_config
from agentray.train.metrics import FlopsModel, mfu, peak_tflops_for

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
PAPER_LR = {"7b": 5e-5, "13b": 5e-5, "70b": 1e-5}


@pytest.mark.parametrize("size", sorted(PAPER_LR))
def test_agentlm_preset_validates_with_the_paper_settings(size, tmp_path):
    # run_dir: the presets' s3:// URI is checked with the cluster recipes (tests/cli)
    cfg = load_config(CONFIGS / f"agentlm-{size}.yaml", {"run_dir": str(tmp_path)})
    assert cfg.model == f"meta-llama/Llama-2-{size}-chat-hf"
    assert cfg.train.model == cfg.process.model == cfg.model  # one model, one chat template
    assert cfg.process.chat_template == "agentlm"  # Llama-2-chat + AgentLM's system prompt
    assert cfg.process.eta == 0.2
    assert cfg.process.packing.enabled
    assert cfg.process.max_seq_len == cfg.process.packing.max_seq_len == 4096
    assert cfg.train.max_seq_len == 4096
    assert cfg.train.global_batch_size() == 64
    assert cfg.train.lr == PAPER_LR[size]
    assert cfg.train.use_gpu and cfg.train.precision == "bf16"
    ds = deepspeed_config(cfg.train)
    assert "auto" not in json.dumps(ds)
    assert ds["train_batch_size"] == 64 and ds["bf16"] == {"enabled": True}
    if size == "70b":
        assert ds["zero_optimization"]["stage"] == 3
        assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"


def test_offload_settings_and_their_rules():
    ds = deepspeed_config(TrainConfig(zero_stage=3, offload="optimizer_and_params"))
    assert ds["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert ds["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert "offload_optimizer" not in deepspeed_config(TrainConfig())["zero_optimization"]
    with pytest.raises(ValidationError, match="offload='optimizer' needs zero_stage 2 or 3"):
        TrainConfig(zero_stage=0, offload="optimizer")
    with pytest.raises(ValidationError, match="needs zero_stage 3"):
        TrainConfig(zero_stage=2, offload="optimizer_and_params")
    with pytest.raises(ValidationError, match="flash_attention_2' needs use_gpu and bf16"):
        TrainConfig(attn_implementation="flash_attention_2")
    with pytest.raises(ValidationError, match="lora.rank"):
        TrainConfig(lora={"enabled": True, "rank": 8})


def test_mfu_estimate(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    flops = FlopsModel(model)
    # tied embeddings: the shared matrix does the output projection, so every weight counts
    assert flops.matmul_params == sum(p.numel() for p in model.parameters())
    layers, hidden = model.config.num_hidden_layers, model.config.hidden_size
    assert flops.flops(10, 100) == 6 * flops.matmul_params * 10 + 12 * layers * hidden * 100
    assert peak_tflops_for("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops_for("NVIDIA H100 PCIe") == 756.0
    assert peak_tflops_for("NVIDIA A100-SXM4-80GB") == 312.0
    assert peak_tflops_for("cpu") is None
    assert mfu(989e12, 1.0, 2, 989.0) == pytest.approx(0.5)
    assert mfu(1e12, 1.0, 1, None) is None
