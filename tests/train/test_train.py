"""Train stage: real Ray Train + DeepSpeed runs on CPU with the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from agentray.model.templates import AGENTLM_CHAT_TEMPLATE
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


def tokenized_rows(tokenizer_dir: str, repeats: int = 8) -> list[dict]:
    """Rows in the process stage's schema; the loss covers the assistant reply."""
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
    return rows


def write_fixture_shards(tokenizer_dir: str, out_dir: Path, repeats: int = 8) -> int:
    """Tokenized rows in two parquet shards, like a real process output."""
    rows = tokenized_rows(tokenizer_dir, repeats)
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
    half = len(rows) // 2
    for k, part in enumerate((rows[:half], rows[half:])):
        pq.write_table(pa.Table.from_pylist(part, schema=schema), out_dir / f"part-{k}.parquet")
    return len(rows)


def _ids(encoded) -> list[int]:
    # transformers 5 returns a BatchEncoding from apply_chat_template(tokenize=True)
    ids = encoded["input_ids"] if hasattr(encoded, "keys") else encoded
    return [int(x) for x in ids]


@pytest.fixture(scope="module")
def train_run_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A run dir as the process stage leaves it: the shards, and the tokenizer with the chat
    template the masks were made with (here the AgentLM preset, not the model's own)."""
    from agentray.process.tokenize import load_tokenizer

    run_dir = tmp_path_factory.mktemp("train_run")
    write_fixture_shards(tiny_model_dir, run_dir / "process" / "train")
    load_tokenizer(tiny_model_dir, "agentlm").save_pretrained(run_dir / "process" / "tokenizer")
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
        micro_batch_size=8,
        gradient_accumulation_steps=3,  # 2 workers x 3 x 8: every step sees all 48 rows
        epochs=60,
        lr=3e-3,
        max_seq_len=256,
        log_every_steps=5,
    )
    rows = tokenized_rows(tiny_model_dir)
    assert max(r["num_tokens"] for r in rows) <= cfg.max_seq_len  # no row is cut
    summary = run_train(cfg, train_run_dir)
    out = train_run_dir / "train"

    history = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert summary["steps"] == len(history) == 60  # 48 rows / (2 workers * 3 * 8) * 60 epochs
    assert [r["step"] for r in history] == list(range(1, 61))
    assert all(r["sequences"] == 48 for r in history)
    assert all(r["tokens"] == sum(r["num_tokens"] for r in rows) for r in history)
    first = sum(r["loss"] for r in history[:5]) / 5
    last = sum(r["loss"] for r in history[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    assert history[-1]["lr"] < history[len(history) // 2]["lr"]  # cosine decay
    assert summary["tokens_per_s"] > 0
    assert summary["attn_implementation"] == "sdpa"  # auto, padded rows, CPU

    # per-step metrics: clipped-at-1.0 gradients have a norm; no MFU without a known peak
    assert all(r["grad_norm"] > 0 for r in history)
    assert all(r["model_tflops_per_s"] > 0 and r["mfu"] is None for r in history)
    scalars = tensorboard_scalars(out / "tensorboard")
    assert [step for step, _ in scalars["train/loss"]] == list(range(1, 61))
    assert [v for _, v in scalars["train/loss"]] == pytest.approx([r["loss"] for r in history])
    assert {"train/lr", "train/grad_norm", "train/tokens_per_s"} <= scalars.keys()

    model = AutoModelForCausalLM.from_pretrained(out / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    assert tokenizer.chat_template == AGENTLM_CHAT_TEMPLATE  # the process stage's, served as is
    initial = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    # Every step's loss is that of the weights before it, over all 48 rows: step 1's is the
    # initial model's. The saved model is the weights after the last step, whose loss over
    # the same rows the trainer logs as final_loss.
    assert history[0]["loss"] == pytest.approx(mean_loss(initial, rows), rel=0, abs=LOSS_ATOL)
    assert summary["final_loss"] == history[-1]["final_loss"]
    # (the weights before the last step, at its cosine-decayed rate of ~2e-6, are 9.5e-6 off)
    assert mean_loss(model, rows) == pytest.approx(summary["final_loss"], rel=0, abs=LOSS_ATOL)
    assert [step for step, _ in scalars["train/final_loss"]] == [60]
    assert "final_loss" not in history[-2]
    # greedy from a training prompt, the saved model writes most of the reply it was trained
    # on (all of it here), the initial one next to none of it
    hits, reply_tokens = reply_tokens_reproduced(model, rows)
    assert hits > max(reply_tokens // 2, reply_tokens_reproduced(initial, rows)[0])

    manifest = read_manifest(out)
    assert manifest["stage"] == "train"
    assert manifest["counts"]["steps"] == 60
    assert manifest["counts"]["final_loss"] == summary["final_loss"]
    assert manifest["counts"]["resumed_from_steps"] == []
    assert manifest["inputs"]["rows"] == 48 and manifest["inputs"]["packed"] is False
    assert (out / "loss.png").stat().st_size > 0


# Losses of the same float32 weights computed in other batch shapes (padded micro-batches
# in the trainer, one row at a time in mean_loss) agreed to within 7e-7 in these tests.
LOSS_ATOL = 3e-6


def mean_loss(model, rows: list[dict]) -> float:
    """The training loss, computed here on its own: cross-entropy of each labelled token
    (labels shifted by one, -100 ignored), summed over every row alone (no padding) and
    divided by the number of labelled tokens."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            logits = model(torch.tensor([row["input_ids"]])).logits[0, :-1].double()
            labels = torch.tensor(row["labels"][1:])
            total += float(F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum"))
            count += int((labels != -100).sum())
    return total / count


def reply_tokens_reproduced(model, rows: list[dict]) -> tuple[int, int]:
    """Over the distinct training conversations: how many of the reply's tokens the greedy
    continuation of its prompt (the row up to the first labelled token) puts in place, and
    how many reply tokens there are."""
    import torch

    hits, total = 0, 0
    for row in rows[: len(CONVERSATIONS)]:
        start = next(i for i, label in enumerate(row["labels"]) if label != -100)
        reply = row["input_ids"][start:]
        prompt = torch.tensor([row["input_ids"][:start]])
        out = model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=len(reply),
            do_sample=False,
        )
        hits += sum(a == b for a, b in zip(out[0, start:].tolist(), reply, strict=False))
        total += len(reply)
    return hits, total


def generates(model, tokenizer, new_tokens: int = 8) -> bool:
    """The checkpoint answers a chat prompt through generate(), and what it generates is
    its greedy decoding, computed here token by token from its logits."""
    import torch

    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": CONVERSATIONS[0][0]}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    ids = prompt["input_ids"]
    out = model.generate(**prompt, max_new_tokens=new_tokens, do_sample=False)
    generated = out.size(1) - ids.size(1)  # fewer than asked only if it ended with EOS
    with torch.no_grad():
        for _ in range(generated):
            next_id = model(ids).logits[0, -1].argmax()
            ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    return generated > 0 and out[0].tolist() == ids[0].tolist()


def tensorboard_scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of the TensorBoard event files (TFRecord frames: length, crc, event, crc)."""
    import struct

    from tensorboardX.proto import event_pb2

    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(logdir.glob("events.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


@pytest.mark.slow
def test_lora_trains_adapters_and_saves_them_merged(
    tmp_path, train_run_dir, tiny_model_dir, ray_local
):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agentray.train.trainer import run_train

    cfg = TrainConfig(
        model=tiny_model_dir,
        data=str(train_run_dir / "process" / "train"),
        output=str(tmp_path / "out"),
        num_workers=2,
        zero_stage=0,  # plain data parallel (LoRA on ZeRO-2/3 runs the same code)
        lora={"enabled": True, "r": 8, "alpha": 16, "dropout": 0.0},
        gradient_checkpointing=True,
        micro_batch_size=4,
        gradient_accumulation_steps=2,  # 48 rows -> 3 steps per epoch
        epochs=6,
        lr=2e-2,
        max_seq_len=256,
        checkpoint_every_steps=9,
        log_every_steps=6,
    )
    summary = run_train(cfg, tmp_path, progress=False)
    out = tmp_path / "out" / "model"
    history = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert summary["steps"] == 18
    assert [r["epoch"] for r in history] == [s // 3 for s in range(18)]
    assert all(r["sequences"] == 16 for r in history)  # 2 workers x 2 micro-batches x 4 rows
    assert all(r["grad_norm"] > 0 for r in history)  # ZeRO-0 clips without keeping it: ours
    first = sum(r["loss"] for r in history[:3]) / 3
    last = sum(r["loss"] for r in history[-3:]) / 3
    assert last < first - 0.2, (first, last)  # a random tiny model: adapters learn slowly

    # the merged model is a full HF model of the same shapes; only adapted layers changed
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    before, after = _state(base), _state(merged)
    assert after.keys() == before.keys()
    changed = {k for k in before if not before[k].equal(after[k])}
    assert changed and all(k.endswith("_proj.weight") for k in changed), changed
    assert before["model.embed_tokens.weight"].equal(after["model.embed_tokens.weight"])

    # base + the saved adapter computes what the merged model computes
    adapted = PeftModel.from_pretrained(base, out / "adapter").eval()
    ids = torch.tensor([tokenized_rows(tiny_model_dir, repeats=1)[0]["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(adapted(ids).logits, merged(ids).logits, atol=1e-4)
    assert generates(merged, AutoTokenizer.from_pretrained(out))


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
