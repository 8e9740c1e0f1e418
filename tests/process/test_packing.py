"""Packing: packs fit, examples survive exactly, attention never crosses examples."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from agentray.model.packing import (
    IGNORE_INDEX,
    PackedCollate,
    PackingConfig,
    PackingError,
    pack_dataset,
    pack_examples,
    packed_attention_mask,
    packing_efficiency,
    plan_packs,
)
from agentray.process.tokenize import encode_conversation, load_tokenizer


def _random_rows(n: int, max_len: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        length = rng.randint(1, max_len)
        ids = [rng.randrange(4, 4096) for _ in range(length)]
        labels = [t if rng.random() < 0.5 else IGNORE_INDEX for t in ids]
        rows.append({"id": f"ex_{i}", "source": rng.choice(["agent", "general"]), "input_ids": ids,
                     "labels": labels})  # fmt: skip
    return rows


def _segments(pack: dict) -> list[slice]:
    seg = np.asarray(pack["segment_ids"])
    return [slice(*np.flatnonzero(seg == k)[[0, -1]] + [0, 1]) for k in range(1, seg.max() + 1)]


def _assert_round_trip(rows: list[dict], packs: list[dict], max_seq_len: int) -> None:
    by_id = {r["id"]: r for r in rows}
    seen = []
    for pack in packs:
        assert pack["num_tokens"] == len(pack["input_ids"]) <= max_seq_len
        k = pack["num_examples"]
        assert len(pack["example_ids"]) == len(pack["sources"]) == k
        assert list(np.unique(pack["segment_ids"])) == list(range(1, k + 1))
        for example_id, source, span in zip(
            pack["example_ids"], pack["sources"], _segments(pack), strict=True
        ):
            row = by_id[example_id]
            n = span.stop - span.start
            assert pack["input_ids"][span].tolist() == row["input_ids"]
            # only the first label is masked: it is never a target (nothing precedes it)
            assert pack["labels"][span].tolist() == [IGNORE_INDEX, *row["labels"][1:]]
            assert pack["position_ids"][span].tolist() == list(range(n))
            assert source == row["source"]
            seen.append(example_id)
        assert pack["num_loss_tokens"] == int((pack["labels"] != IGNORE_INDEX).sum())
    assert sorted(seen) == sorted(by_id)  # every example exactly once


@pytest.mark.parametrize("strategy", ["best_fit", "next_fit"])
def test_packs_fit_and_examples_survive_exactly(strategy):
    rows = _random_rows(300, 200)
    packs = pack_examples(rows, 256, strategy=strategy)
    _assert_round_trip(rows, packs, 256)


def test_best_fit_fills_packs():
    rows = _random_rows(2000, 400, seed=1)
    total = sum(len(r["input_ids"]) for r in rows)
    best = pack_examples(rows, 1024)
    in_order = pack_examples(rows, 1024, strategy="next_fit")
    lower_bound = -(-total // 1024)
    assert len(best) <= lower_bound + 2  # best-fit decreasing is within a pack of optimal here
    assert len(best) < len(in_order)
    assert packing_efficiency(best, 1024) > 0.98
    # a known instance: 6+2, 5+3, 4+4 fill three packs of 8 exactly
    assert plan_packs([2, 3, 4, 4, 5, 6], 8) == [[5, 0], [4, 1], [2, 3]]


def test_packing_is_deterministic():
    rows = _random_rows(500, 300, seed=2)
    first, second = pack_examples(rows, 512), pack_examples(list(rows), 512)
    assert [p["example_ids"] for p in first] == [p["example_ids"] for p in second]
    for a, b in zip(first, second, strict=True):
        assert all(np.array_equal(a[k], b[k]) for k in ("input_ids", "labels", "segment_ids"))


def test_long_example_is_refused_or_split():
    rows = _random_rows(5, 50) + [_random_rows(1, 1, seed=3)[0] | {"id": "long"}]
    rows[-1]["input_ids"] = list(range(4, 134))
    rows[-1]["labels"] = list(range(4, 134))
    with pytest.raises(PackingError, match=r"'long' has 130 tokens > max_seq_len=60"):
        pack_examples(rows, 60)
    packs = pack_examples(rows, 60, split_long=True)
    chunks = {i: p for p in packs for i in p["example_ids"] if i.startswith("long#")}
    assert sorted(chunks) == ["long#0", "long#1", "long#2"]
    rebuilt = []
    for name in sorted(chunks):
        pack = chunks[name]
        rebuilt += pack["input_ids"][_segments(pack)[pack["example_ids"].index(name)]].tolist()
    assert rebuilt == rows[-1]["input_ids"]
    assert all(len(p["input_ids"]) <= 60 for p in packs)


def test_padding_is_its_own_segment():
    rows = _random_rows(20, 40, seed=4)
    packs = pack_examples(rows, 64, pad_id=3)
    for pack in packs:
        real = pack["num_tokens"]
        assert len(pack["input_ids"]) == 64
        assert (pack["segment_ids"][real:] == 0).all() and (pack["segment_ids"][:real] > 0).all()
        assert (pack["labels"][real:] == IGNORE_INDEX).all()
        assert (pack["input_ids"][real:] == 3).all()


def test_attention_mask_is_block_diagonal_causal():
    mask = packed_attention_mask(torch.tensor([[1, 1, 2, 2, 2, 0]]))
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [0, 0, 1, 0, 0, 0],
            [0, 0, 1, 1, 0, 0],
            [0, 0, 1, 1, 1, 0],
            [0, 0, 0, 0, 0, 1],
        ],
        dtype=torch.bool,
    )
    assert mask.shape == (1, 1, 6, 6) and mask.dtype == torch.bool
    assert torch.equal(mask[0, 0], expected)
    additive = packed_attention_mask(torch.tensor([[1, 1, 2, 2, 2, 0]]), dtype=torch.float32)
    assert torch.equal(additive[0, 0] == 0, expected)
    assert additive.min() == torch.finfo(torch.float32).min


# ---------------------------------------------------------------- the model sees no difference

CONVERSATIONS = [
    [("human", "List the files in /etc."), ("gpt", "Act: bash\n```bash\nls /etc\n```")],
    [
        ("human", "How many rows are in the table employees?"),
        ("gpt", "Action: Operation\n```sql\nSELECT COUNT(*) FROM employees;\n```"),
        ("human", "[(42,)]"),
        ("gpt", "Action: Answer\nFinal Answer: [42]"),
    ],
    [("human", "Say hi."), ("gpt", "Hi!")],
    [
        ("human", "Write a haiku about packing sequences into one row."),
        ("gpt", "Many short stories\nshare a single long line now\nnone reads the others"),
        ("human", "Now one about padding."),
        ("gpt", "Empty tokens wait\ncomputed and thrown away\nthe GPU sighs"),
    ],
    [("human", "What is 2 + 2?"), ("gpt", "4")],
]


@pytest.fixture(scope="module")
def examples(tiny_model_dir) -> list[dict]:
    tokenizer = load_tokenizer(tiny_model_dir)
    rows = []
    for i, chat in enumerate(CONVERSATIONS):
        turns = [{"from": f, "loss": None if f == "human" else True, "value": v} for f, v in chat]
        rows.append({"id": f"c{i}", "source": "agent"} | encode_conversation(tokenizer, turns, 512))
    return rows


def _model(path: str, attn: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn).eval()


def _token_losses(model, batch: dict) -> torch.Tensor:
    """Per-token loss of predicting labels[:, 1:] (0 where the label is -100)."""
    kwargs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    with torch.no_grad():
        # use_cache=False matters for mask="none": with a cache, transformers skips finding
        # the segments from position_ids and attends across examples
        logits = model(**kwargs, use_cache=False).logits
    targets = batch["labels"][:, 1:]
    return torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
    )


def _alone_losses(model, examples: list[dict]) -> dict[str, float]:
    out = {}
    for ex in examples:
        labels = torch.tensor([ex["labels"]])
        losses = _token_losses(
            model, {"input_ids": torch.tensor([ex["input_ids"]]), "labels": labels}
        )
        out[ex["id"]] = float(losses.sum() / (labels[:, 1:] != IGNORE_INDEX).sum())
    return out


def _packed_losses(model, packs: list[dict], batch: dict) -> dict[str, float]:
    losses = _token_losses(model, batch)
    segments, labeled = batch["segment_ids"][:, 1:], batch["labels"][:, 1:] != IGNORE_INDEX
    out = {}
    for row, pack in enumerate(packs):
        for k, example_id in enumerate(pack["example_ids"], start=1):
            where = (segments[row] == k) & labeled[row]
            out[example_id] = float(losses[row][where].sum() / where.sum())
    return out


def _collate(packs: list[dict], mask: str) -> dict:
    columns = ("input_ids", "labels", "position_ids", "segment_ids")
    batch = {key: np.array([p[key] for p in packs], dtype=object) for key in columns}
    return PackedCollate(pad_id=3, max_seq_len=512, mask=mask)(batch)


@pytest.mark.parametrize(("attn", "mask"), [("sdpa", "bool"), ("eager", "float"), ("sdpa", "none")])
def test_packed_forward_matches_each_example_alone(
    prompt_sensitive_model_dir, examples, attn, mask
):
    model = _model(prompt_sensitive_model_dir, attn)
    lengths = [len(e["input_ids"]) for e in examples]
    packs = pack_examples(examples, max(lengths) + min(lengths) + 8)
    assert len(packs) < len(examples) and max(p["num_examples"] for p in packs) >= 2
    batch = _collate(packs, mask)  # packs of unequal length: the shorter one is padded
    assert (batch["segment_ids"] == 0).any()

    alone, packed = _alone_losses(model, examples), _packed_losses(model, packs, batch)
    assert packed.keys() == alone.keys()
    for example_id, loss in alone.items():
        assert packed[example_id] == pytest.approx(loss, abs=1e-4), example_id


def test_without_the_packed_mask_examples_leak(prompt_sensitive_model_dir, examples):
    """The control: a plain causal mask over the same packs changes later examples' loss."""
    model = _model(prompt_sensitive_model_dir, "sdpa")
    lengths = [len(e["input_ids"]) for e in examples]
    packs = pack_examples(examples, max(lengths) + min(lengths) + 8)
    batch = _collate(packs, "bool")
    plain = {
        "input_ids": batch["input_ids"],
        "labels": batch["labels"],
        "segment_ids": batch["segment_ids"],
        "attention_mask": (batch["segment_ids"] > 0).long(),
    }
    alone, leaky = _alone_losses(model, examples), _packed_losses(model, packs, plain)
    later = [i for p in packs for i in p["example_ids"][1:]]
    assert later and all(abs(leaky[i] - alone[i]) > 1e-3 for i in later)


# ---------------------------------------------------------------- Ray Data


@pytest.mark.usefixtures("ray_local")
def test_ray_data_packing_streams_batches():
    import ray

    rows = _random_rows(400, 120, seed=5)
    ds = ray.data.from_items(rows, override_num_blocks=4)
    cfg = PackingConfig(enabled=True, max_seq_len=256, batch_rows=100)
    packed = pack_dataset(ds, cfg).materialize()
    packs = [
        {k: np.asarray(v) if k in ("input_ids", "labels", "position_ids", "segment_ids") else v
         for k, v in row.items()}
        for row in packed.take_all()
    ]  # fmt: skip
    for p in packs:
        p["example_ids"], p["sources"] = list(p["example_ids"]), list(p["sources"])
    _assert_round_trip(rows, packs, 256)
    # per-batch packing is close to packing everything at once
    assert len(packs) <= len(pack_examples(rows, 256)) * 1.1

    batches = list(
        packed.iter_torch_batches(batch_size=4, collate_fn=PackedCollate(3, 256), drop_last=True)
    )
    first = batches[0]
    assert first["attention_mask"].shape == (
        4,
        1,
        first["input_ids"].size(1),
        first["input_ids"].size(1),
    )
    assert first["input_ids"].size(1) <= 256
