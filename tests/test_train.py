"""Train stage: real Ray Train + DeepSpeed runs on CPU with the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from agentray.train.config import TrainConfig

CONVERSATIONS = [
    ("List the files in /tmp.", "Act: bash\n```bash\nls /tmp\n```"),
    (
        "How many rows are in table users?",
        "Action: Operation\n```sql\nSELECT COUNT(*) FROM users;\n```",
    ),
    ("Say hello.", "Hello! How can I help you today?"),
    ("What is 2 + 3?", "2 + 3 = 5."),
    ("Count the lines of notes.txt.", "Act: bash\n```bash\nwc -l notes.txt\n```"),
    ("Name a primary colour.", "Red is a primary colour."),
]


def write_fixture_shards(tokenizer_dir: str, out_dir: Path, repeats: int = 8) -> int:
    """Tokenized rows in the process stage's schema; the loss covers the assistant reply."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    rows = []
    for i, (user, assistant) in enumerate(CONVERSATIONS * repeats):
        prompt = [{"role": "user", "content": user}]
        prompt_ids = _ids(tok.apply_chat_template(prompt, tokenize=True))
        ids = _ids(tok.apply_chat_template(prompt + [{"role": "assistant", "content": assistant}]))
        assert ids[: len(prompt_ids)] == prompt_ids
        labels = [-100] * len(prompt_ids) + ids[len(prompt_ids) :]
        rows.append(
            {
                "id": f"row_{i}",
                "source": "agent" if i % 2 else "general",
                "family": "os" if i % 2 else "sharegpt",
                "input_ids": ids,
                "labels": labels,
                "num_tokens": len(ids),
                "num_loss_tokens": sum(1 for x in labels if x != -100),
            }
        )
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("source", pa.string()),
            ("family", pa.string()),
            ("input_ids", pa.list_(pa.int32())),
            ("labels", pa.list_(pa.int32())),
            ("num_tokens", pa.int32()),
            ("num_loss_tokens", pa.int32()),
        ]
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    half = len(rows) // 2  # two shards, like a real process output
    for k, part in enumerate((rows[:half], rows[half:])):
        pq.write_table(pa.Table.from_pylist(part, schema=schema), out_dir / f"part-{k}.parquet")
    return len(rows)


def _ids(encoded) -> list[int]:
    # transformers 5 returns a BatchEncoding from apply_chat_template(tokenize=True)
    ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
    return [int(x) for x in ids]


@pytest.fixture(scope="module")
def train_run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    run_dir = tmp_path_factory.mktemp("train_run")
    write_fixture_shards(tiny_model_dir, run_dir / "process" / "train")
    return run_dir


def _state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_train_zero2_learns_and_saves_hf_model(train_run_dir, tiny_model_dir, ray_local):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agentray.manifest import read_manifest
    from agentray.train.trainer import run_train

    cfg = TrainConfig(
        model=tiny_model_dir,
        num_workers=2,
        zero_stage=2,
        micro_batch_size=4,
        epochs=10,
        lr=3e-3,
        max_seq_len=256,
        log_every_steps=5,
    )
    summary = run_train(cfg, train_run_dir)
    out = train_run_dir / "train"

    history = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert summary["steps"] == len(history) == 60  # 48 rows / (2 workers * 4) * 10 epochs
    assert [r["step"] for r in history] == list(range(1, 61))
    first = sum(r["loss"] for r in history[:5]) / 5
    last = sum(r["loss"] for r in history[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    assert history[-1]["lr"] < history[len(history) // 2]["lr"]  # cosine decay
    assert summary["tokens_per_s"] > 0

    model = AutoModelForCausalLM.from_pretrained(out / "model")
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    assert tokenizer.chat_template
    initial = _state(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    trained = _state(model)
    assert trained.keys() == initial.keys()
    assert any(not initial[k].equal(trained[k]) for k in initial)

    manifest = read_manifest(out)
    assert manifest["stage"] == "train"
    assert manifest["counts"]["steps"] == 60
    assert manifest["inputs"]["rows"] == 48
    assert (out / "loss.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.parametrize("zero_stage", [0, 3])
def test_train_other_zero_stages_save_full_weights(
    zero_stage, tmp_path, train_run_dir, tiny_model_dir, ray_local
):
    from transformers import AutoModelForCausalLM

    from agentray.train.trainer import run_train

    cfg = TrainConfig(
        model=tiny_model_dir,
        data=str(train_run_dir / "process" / "train"),
        output=str(tmp_path / "out"),
        num_workers=2,
        zero_stage=zero_stage,
        # ZeRO-3: partition every parameter, however small, so a wrong save would show
        deepspeed={"zero_optimization": {"stage3_param_persistence_threshold": 0}},
        micro_batch_size=4,
        gradient_accumulation_steps=2,  # 48 rows -> 3 steps per epoch
        epochs=2,
        max_steps=4,
        max_seq_len=256,
        checkpoint_every_steps=2,
    )
    summary = run_train(cfg, tmp_path, progress=False)
    history = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert summary["steps"] == 4
    assert [r["epoch"] for r in history] == [0, 0, 0, 1]
    assert all(r["sequences"] == 16 for r in history)  # 2 workers x 2 micro-batches x 4 rows

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "model")
    initial = _state(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    trained = _state(model)
    for name, tensor in trained.items():
        assert tensor.numel() > 0 and tensor.shape == initial[name].shape, name
    assert any(not initial[k].equal(trained[k]) for k in initial)


@pytest.mark.parametrize(
    ("field", "value"),
    [("zero_stage", 1), ("precision", "fp16x"), ("micro_batch_size", 0), ("bogus", 1)],
)
def test_train_config_rejects_bad_fields(field, value):
    with pytest.raises(ValidationError) as err:
        TrainConfig(**{field: value})
    assert field in str(err.value)


def test_deepspeed_config_is_filled_without_auto():
    from agentray.train.trainer import deepspeed_config

    for stage in (0, 2, 3):
        cfg = TrainConfig(
            zero_stage=stage,
            num_workers=4,
            micro_batch_size=2,
            gradient_accumulation_steps=3,
            precision="bf16",
            deepspeed={"zero_optimization": {"overlap_comm": False}},
        )
        ds = deepspeed_config(cfg)
        assert "auto" not in json.dumps(ds)
        assert ds["train_batch_size"] == 24
        assert ds["zero_optimization"]["stage"] == stage
        assert ds["zero_optimization"]["overlap_comm"] is False
        assert ds["bf16"] == {"enabled": True}


def test_plan_steps_rejects_too_little_data():
    from agentray.train.trainer import plan_steps

    cfg = TrainConfig(num_workers=2, micro_batch_size=4, epochs=3, max_steps=7)
    assert plan_steps(40, cfg) == (7, 5)
    with pytest.raises(ValueError, match="fewer than one optimizer step"):
        plan_steps(7, cfg)


def test_pad_collate_truncates_and_pads():
    import numpy as np

    from agentray.train.trainer import PadCollate

    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = np.arange(1, 7, dtype=np.int32), np.array([9], dtype=np.int32)
    labels = np.empty(2, dtype=object)
    labels[0], labels[1] = np.array([-100, -100, 3, 4, 5, 6]), np.array([9])
    out = PadCollate(pad_id=0, max_seq_len=4)({"input_ids": ragged, "labels": labels})
    assert out["input_ids"].tolist() == [[1, 2, 3, 4], [9, 0, 0, 0]]
    assert out["labels"].tolist() == [[-100, -100, 3, 4], [9, -100, -100, -100]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 0, 0, 0]]
