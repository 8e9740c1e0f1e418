"""``train.loss: dpo``: its config, the pairs it reads and sets aside, and a short real run
(Ray Train, the torch engine, the tiny model) on hand-made pairs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from agentray.train.config import TrainConfig

ANSWERS = [
    ("What is 2 + 3?", "2 + 3 = 5.", "2 + 3 = 7."),
    ("List the files in /tmp.", "Act: bash\n```bash\nls /tmp\n```", "I cannot do that."),
    ("Say hello.", "Hello! How can I help you today?", "Goodbye."),
    ("Name a primary colour.", "Red is a primary colour.", "Green is a primary colour."),
    ("Count the lines of notes.txt.", "Act: bash\n```bash\nwc -l notes.txt\n```", "Lines."),
    ("What is the capital of France?", "Paris.", "Lyon, I think."),
    ("Click the search button.", "Action: click(7)", "Action: type(2, hello)"),
    ("How many rows in users?", "```sql\nSELECT COUNT(*) FROM users;\n```", "Many rows."),
]
LONG = {
    "prompt": [{"role": "user", "content": "Tell me a long story."}],
    "chosen": [{"role": "assistant", "content": "Once upon a time. The end."}],
    "rejected": [{"role": "assistant", "content": " ".join(["blah"] * 400)}],
    "task_id": "story-1",
    "chosen_id": "c1",
    "rejected_id": "r1",
}


def hand_made_pairs() -> list[dict]:
    return [
        {
            "prompt": [{"role": "user", "content": question}],
            "chosen": [{"role": "assistant", "content": good}],
            "rejected": [{"role": "assistant", "content": bad}],
            "task_id": f"task-{i}",
            "chosen_id": f"c{i}",
            "rejected_id": f"r{i}",
        }
        for i, (question, good, bad) in enumerate(ANSWERS)
    ]


def write_pairs(folder: Path, pairs: list[dict]) -> Path:
    """As ``agentray iterate`` writes them: the same pairs as parquet and as jsonl."""
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(pairs), folder / "pairs.parquet")
    (folder / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return folder


# ---------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"loss": "dpo", "dpo": {"pairs": "p", "betta": 0.2}}, "betta"),
        ({"loss": "dpo", "dpo": {"pairs": "p", "beta": 0}}, "beta"),
        ({"loss": "dpo", "dpo": {"pairs": "p", "label_smoothing": 0.5}}, "label_smoothing"),
        ({"loss": "dop", "dpo": {"pairs": "p"}}, "loss"),
        ({"loss": "dpo"}, "needs train.dpo.pairs"),
        ({"dpo": {"pairs": "p"}}, "train.loss is 'sft'"),
        (
            {
                "loss": "dpo",
                "dpo": {"pairs": "p", "packing": False},
                "attn_implementation": "sdpa_varlen",
            },
            "needs packs",
        ),
        ({"loss": "dpo", "dpo": {"pairs": "p"}, "zero_stage": 3}, "ZeRO-3"),
    ],
)
def test_dpo_config_rejects_typos_and_invalid_combinations(settings, message):
    with pytest.raises(ValidationError, match=message):
        TrainConfig(**settings)


def test_dpo_config_defaults():
    cfg = TrainConfig(loss="dpo", dpo={"pairs": "s3://bucket/round-1/pairs"})
    assert (cfg.dpo.beta, cfg.dpo.label_smoothing, cfg.dpo.packing) == (0.1, 0.0, True)
    TrainConfig(loss="dpo", dpo={"pairs": "p"}, attn_implementation="sdpa_varlen")  # packed
    assert TrainConfig().loss == "sft"


# ---------------------------------------------------------------------------- pairs


def test_a_pairs_folder_is_read_once_and_long_pairs_are_set_aside_by_name(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    from agentray.train.preference import read_pairs, tokenize_pairs

    folder = write_pairs(tmp_path / "pairs", [*hand_made_pairs(), LONG])
    pairs = read_pairs(str(folder))
    assert len(pairs) == len(ANSWERS) + 1  # the parquet only, not its jsonl twin
    assert pairs[0][0].endswith("pairs.parquet#0")
    assert len(read_pairs(str(folder / "pairs.jsonl"))) == len(ANSWERS) + 1
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows, too_long = tokenize_pairs(pairs, tokenizer, max_seq_len=96)
    assert too_long == ["story-1:c1>r1"]
    assert len(rows) == len(ANSWERS)
    for row in rows:
        assert max(len(row["chosen_input_ids"]), len(row["rejected_input_ids"])) <= 96
        assert len(row["chosen_labels"]) == len(row["chosen_input_ids"])


def test_pairs_without_a_side_are_refused_with_their_file_and_row(tmp_path):
    from agentray.train.preference import read_pairs

    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"prompt": [], "chosen": []}) + "\n")
    with pytest.raises(ValueError, match=r"broken.jsonl row 0: .*\['rejected'\]"):
        read_pairs(str(broken))
    with pytest.raises(FileNotFoundError, match="no .parquet or .jsonl"):
        read_pairs(str(tmp_path / "nothing-here"))


# ---------------------------------------------------------------------------- a real run


def _margins(model_dir: str, pairs: list[dict]) -> list[float]:
    """log p(chosen) - log p(rejected) of each pair under the model at ``model_dir``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from agentray.train.dpo import collate_pairs, encode_pair, pair_logps

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    batch = collate_pairs([encode_pair(tokenizer, p, 4096) for p in pairs], tokenizer.pad_token_id)
    with torch.no_grad():
        chosen, rejected = pair_logps(model, batch)
    return (chosen - rejected).tolist()


def _dpo_config(tiny_model_dir: str, folder: Path, output: Path, **overrides) -> TrainConfig:
    settings = {
        "model": tiny_model_dir,
        "loss": "dpo",
        "dpo": {"pairs": str(folder), "beta": 0.1},
        "num_workers": 1,
        "engine": "torch",
        "micro_batch_size": 4,
        "epochs": 3,
        "lr": 1e-3,
        "warmup_ratio": 0.0,
        "lr_schedule": "constant",
        # the long pair's rejected side (819 tokens) does not fit; a step's 8 sequences
        # (at most 254 tokens) fit one packed row
        "max_seq_len": 256,
        "log_every_steps": 1,
        "output": str(output),
    }
    return TrainConfig(**(settings | overrides))


@pytest.mark.slow
def test_dpo_run_starts_at_log2_learns_the_preferences_and_saves_them(
    tmp_path, tiny_model_dir, ray_local
):
    """Packed (train.dpo.packing, the default) on the torch engine, then a short padded run
    on DeepSpeed (ZeRO-2: the engine of multi-worker runs)."""
    from agentray.train.trainer import run_train

    pairs = hand_made_pairs()
    folder = write_pairs(tmp_path / "round-1" / "pairs", [*pairs, LONG])
    cfg = _dpo_config(tiny_model_dir, folder, tmp_path / "train")
    summary = run_train(cfg, str(tmp_path), progress=False)
    assert summary["steps"] == 6  # 8 pairs that fit / 4 a step, 3 epochs

    out = tmp_path / "train"
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = history[0], history[-1]
    # step 1 scores the starting weights: policy == reference, every margin 0
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert first["reward_margin"] == pytest.approx(0.0, abs=1e-5)
    assert first["reward_accuracy"] == 0.0
    assert first["pairs"] == 4 and first["sequences"] == 8
    assert last["loss"] < first["loss"] - 0.1
    assert last["final_loss"] < last["loss"]
    assert last["reward_accuracy"] > first["reward_accuracy"]
    assert last["reward_margin"] > 0.5

    # one epoch padded, on DeepSpeed: the same sequences and tokens, one right-padded row each
    no_packing = {"pairs": str(folder), "beta": 0.1, "packing": False}
    padded_cfg = _dpo_config(
        tiny_model_dir, folder, tmp_path / "padded", epochs=1, dpo=no_packing, engine="deepspeed"
    )
    padded_summary = run_train(padded_cfg, str(tmp_path), progress=False)
    padded = [json.loads(line) for line in (tmp_path / "padded" / "metrics.jsonl").open()]
    assert (summary["packed"], padded_summary["packed"]) == (True, False)
    assert (summary["engine"], padded_summary["engine"]) == ("torch", "deepspeed")
    assert padded[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    epoch = history[:2]  # the packed run's first epoch: the same 8 pairs
    assert sum(r["tokens"] for r in epoch) == sum(r["tokens"] for r in padded)
    assert sum(r["sequences"] for r in epoch) == sum(r["sequences"] for r in padded) == 16
    assert all(r["padded_tokens"] == r["tokens"] for r in history)  # one full row a step
    assert sum(r["padded_tokens"] for r in epoch) < sum(r["padded_tokens"] for r in padded)

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["inputs"]["pairs_read"] == len(pairs) + 1
    assert manifest["inputs"]["pairs_too_long"] == 1
    assert manifest["inputs"]["pairs_too_long_named"] == ["story-1:c1>r1"]
    assert manifest["config"]["loss"] == "dpo"

    # the saved model prefers chosen over rejected more than the base did, pair by pair
    before, after = _margins(tiny_model_dir, pairs), _margins(str(out / "model"), pairs)
    gains = [a - b for a, b in zip(after, before, strict=True)]
    assert all(gain > 0 for gain in gains), gains
