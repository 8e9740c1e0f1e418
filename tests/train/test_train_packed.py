"""Packed training rows: the trainer's own batches and loss give every example the loss it
has alone, and a packed ZeRO-3 run's first step sees exactly the unpacked loss."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from test_train import LOSS_ATOL, mean_loss, tokenized_rows

from agentray.model.packing import PACK_COLUMNS, pack_examples
from agentray.model.varlen import VARLEN_SDPA, register
from agentray.train.batches import (
    IGNORE_INDEX,
    MODEL_INPUTS,
    FlatPackCollate,
    PadCollate,
    attention_pairs,
    examples_in,
    forward_loss,
    is_packed,
    make_collate,
    token_losses,
)
from agentray.train.config import TrainConfig

# the loss-equality tests run on this torch device (fp32): benchmarks/gpu_check.sh sets cuda
DEVICE = os.environ.get("AGENTRAY_TEST_DEVICE", "cpu")


def _model(path: str, attn: str):
    from transformers import AutoModelForCausalLM

    if attn == VARLEN_SDPA:
        register()
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn).to(DEVICE).eval()


def _on_device(batch: dict) -> dict:
    return {k: v.to(DEVICE) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _ragged(rows: list[dict], key: str) -> np.ndarray:
    out = np.empty(len(rows), dtype=object)
    for i, row in enumerate(rows):
        out[i] = np.asarray(row[key], dtype=np.int64)
    return out


def _batch(rows: list[dict], keys) -> dict:
    return {key: _ragged(rows, key) for key in keys}


def _alone(model, examples: list[dict]) -> dict[str, tuple[float, int]]:
    """(loss sum, loss tokens) of each example in a batch of its own, unpadded."""
    out = {}
    with torch.no_grad():
        for ex in examples:
            batch = PadCollate(pad_id=3, max_seq_len=4096)(_batch([ex], ("input_ids", "labels")))
            batch = _on_device(batch)
            loss_sum, n = forward_loss(model, batch)
            out[ex["id"]] = (float(loss_sum), int(n))
    return out


def _per_example(model, batch: dict, example_ids: list[str]) -> dict[str, tuple[float, int]]:
    """Split a packed batch's token losses by example (segment ids are 1..k per pack row,
    or unique over the flattened row)."""
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    with torch.no_grad():
        losses = token_losses(model(**inputs, use_cache=False).logits, batch["labels"])
    segments = batch["segment_ids"][:, 1:]
    labeled = batch["labels"][:, 1:] != IGNORE_INDEX
    keys = sorted(
        {(r, int(s)) for r in range(segments.size(0)) for s in segments[r].unique() if s > 0}
    )
    assert len(keys) == len(example_ids)
    out = {}
    for example_id, (row, seg) in zip(example_ids, keys, strict=True):
        where = (segments[row] == seg) & labeled[row]
        out[example_id] = (float(losses[row][where].sum()), int(where.sum()))
    return out


@pytest.mark.parametrize("attn", ["sdpa", "eager", "flat", VARLEN_SDPA])
def test_packing_does_not_change_any_examples_loss(prompt_sensitive_model_dir, attn):
    """The trainer's collate for each attention kernel + its forward_loss: every example's
    loss inside a pack equals its loss alone, and so does the batch total."""
    examples = tokenized_rows(prompt_sensitive_model_dir, repeats=1)
    # unpacked rows never train their first label either (it is a prompt token here), so
    # the packer's -100 on each example's first label changes nothing
    assert all(ex["labels"][0] == IGNORE_INDEX for ex in examples)
    lengths = [len(ex["input_ids"]) for ex in examples]
    packs = pack_examples(examples, max(lengths) + min(lengths) + 4)
    assert len(packs) < len(examples) and max(p["num_examples"] for p in packs) >= 2

    model = _model(prompt_sensitive_model_dir, "sdpa" if attn == "flat" else attn)
    # "flat": the one-row batch flash-attention gets, run here on sdpa
    collate = FlatPackCollate(512) if attn == "flat" else make_collate(True, 3, 512, attn)
    batch = _on_device(
        collate(_batch(packs, ("input_ids", "labels", "position_ids", "segment_ids")))
    )
    example_ids = [i for p in packs for i in p["example_ids"]]
    if attn in ("flat", VARLEN_SDPA):
        assert batch["input_ids"].size(0) == 1 and "attention_mask" not in batch
        assert batch["input_ids"].size(1) == sum(lengths)  # no padding at all
    else:
        assert (batch["segment_ids"] == 0).any()  # packs of unequal length: one is padded

    alone = _alone(model, examples)
    packed = _per_example(model, batch, example_ids)
    for example_id, (loss, n) in alone.items():
        assert packed[example_id][1] == n, example_id
        assert packed[example_id][0] == pytest.approx(loss, rel=1e-4, abs=1e-4), example_id
    with torch.no_grad():
        total, count = forward_loss(model, batch)
    assert int(count) == sum(n for _, n in alone.values())
    assert float(total) == pytest.approx(sum(s for s, _ in alone.values()), rel=1e-5)
    assert examples_in(batch) == len(examples)
    assert float(attention_pairs(batch)) == sum(n * n for n in lengths)


def test_varlen_sdpa_gives_the_block_diagonal_losses_and_gradients(prompt_sensitive_model_dir):
    """One training micro-batch of packs: sdpa with the 4D block-diagonal mask over padded
    rows and sdpa_varlen over the flattened row give the same loss and the same gradients."""
    examples = tokenized_rows(prompt_sensitive_model_dir, repeats=2)
    lengths = [len(ex["input_ids"]) for ex in examples]
    packs = pack_examples(examples, max(lengths) * 3)
    assert max(p["num_examples"] for p in packs) >= 3
    raw = _batch(packs, ("input_ids", "labels", "position_ids", "segment_ids"))
    results = {}
    for attn in ("sdpa", VARLEN_SDPA):
        model = _model(prompt_sensitive_model_dir, attn).train()
        loss_sum, n = forward_loss(model, _on_device(make_collate(True, 3, 4096, attn)(raw)))
        (loss_sum / n).backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters()}
        results[attn] = (float(loss_sum.detach()), int(n), grads)
    (block, n_block, g_block), (varlen, n_varlen, g_varlen) = results.values()
    assert n_block == n_varlen > 0
    assert varlen == pytest.approx(block, rel=1e-5)
    for key, grad in g_block.items():
        torch.testing.assert_close(g_varlen[key], grad, rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.parametrize("packed", [False, True])
def test_logits_of_label_positions_only_give_the_full_loss_and_gradients(
    prompt_sensitive_model_dir, packed
):
    """forward_loss projects only the positions that predict a label onto the vocabulary;
    its loss and gradients equal those from every position's logits."""
    examples = tokenized_rows(prompt_sensitive_model_dir, repeats=2)
    rows = pack_examples(examples, 4096) if packed else examples
    columns = ("input_ids", "labels", "position_ids", "segment_ids")
    collate = make_collate(packed, 3, 4096, "sdpa")
    batch = _on_device(collate(_batch(rows, columns if packed else columns[:2])))
    labeled = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    assert 0 < labeled < batch["input_ids"].numel() // 2  # most positions need no logits
    results = []
    for full in (True, False):
        model = _model(prompt_sensitive_model_dir, "sdpa").train()
        if full:
            inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
            logits = model(**inputs, use_cache=False).logits
            assert logits.shape[:2] == batch["input_ids"].shape
            loss_sum, n = token_losses(logits, batch["labels"]).sum(), labeled
        else:
            loss_sum, n = forward_loss(model, batch)
        (loss_sum / n).backward()
        results.append((float(loss_sum.detach()), int(n), model))
    (full_loss, n_full, full_model), (kept_loss, n_kept, kept_model) = results
    assert n_kept == n_full == labeled
    assert kept_loss == pytest.approx(full_loss, rel=1e-5)
    kept_grads = dict(kept_model.named_parameters())
    for key, param in full_model.named_parameters():
        torch.testing.assert_close(kept_grads[key].grad, param.grad, rtol=1e-4, atol=1e-6)


def test_label_cross_entropy_matches_torch_and_refuses_a_second_backward():
    """Its losses and logits gradients are F.cross_entropy's, also behind an op that saved
    the logits for its own backward (soft-capping's tanh); a retained graph's second
    backward, which would read the log-probabilities its first one overwrote, raises."""
    from agentray.train.batches import label_cross_entropy

    torch.manual_seed(0)
    logits = torch.randn(37, 211) * 4
    targets = torch.randint(0, 211, (37,))
    weights = torch.rand(37)  # a different upstream gradient per row
    for capped in (False, True):
        results = []
        for ours in (True, False):
            leaf = logits.clone().requires_grad_()
            scores = torch.tanh(leaf / 8) * 8 if capped else leaf
            if ours:
                losses = label_cross_entropy().apply(scores, targets)
            else:
                losses = torch.nn.functional.cross_entropy(scores, targets, reduction="none")
            (losses * weights).sum().backward(retain_graph=True)
            results.append((losses.detach(), leaf.grad.clone()))
            if ours:
                with pytest.raises(RuntimeError, match="backward ran twice"):
                    (losses * weights).sum().backward()
        for got, want in zip(*results, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


def _graph_nodes(root) -> set[str]:
    """The names of the autograd nodes behind ``root``."""
    seen, todo = set(), [root]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo += [child for child, _ in node.next_functions]
    return {node.name() for node in seen}


def test_varlen_sdpa_chunks_long_examples_with_per_example_causal_results():
    """With one thread, examples longer than QUERY_CHUNK run in query chunks merged by
    log-sum-exp: outputs and q/k/v gradients equal causal sdpa on each example alone (short
    ones, an exact multiple of the chunk and a ragged last chunk in one row)."""
    from agentray.model.varlen import QUERY_CHUNK, varlen_sdpa_forward

    lengths = [3 * QUERY_CHUNK + 37, 5, QUERY_CHUNK + 1, 2 * QUERY_CHUNK, QUERY_CHUNK]
    position_ids = torch.cat([torch.arange(n) for n in lengths])[None]
    torch.manual_seed(0)
    # [1, heads, n, dim] views of [1, n, heads, dim], as transformers hands them over
    q, k, v = (torch.randn(1, sum(lengths), 4, 32).transpose(1, 2) for _ in range(3))
    grad = torch.randn(1, sum(lengths), 4, 32)
    results = []
    threads = torch.get_num_threads()
    for chunked in (True, False):
        leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
        if chunked:
            torch.set_num_threads(1)  # chunks run with one intra-op thread only
            try:
                out, _ = varlen_sdpa_forward(
                    None, *leaves, None, 32**-0.5, position_ids=position_ids
                )
            finally:
                torch.set_num_threads(threads)
            assert "ChunkedCausalBackward" in _graph_nodes(out.grad_fn)
        else:
            parts = [
                torch.nn.functional.scaled_dot_product_attention(*qkv, is_causal=True)
                for qkv in zip(*(t.split(lengths, dim=2) for t in leaves), strict=True)
            ]
            out = torch.cat(parts, dim=2).transpose(1, 2)
        out.backward(grad)
        results.append((out.detach(), *(t.grad for t in leaves)))
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_varlen_sdpa_refuses_padded_batches_and_unpacked_rows(prompt_sensitive_model_dir):
    model = _model(prompt_sensitive_model_dir, VARLEN_SDPA)
    ids = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 3]])
    with pytest.raises(ValueError, match="takes one flattened pack row"):
        model(input_ids=ids, position_ids=torch.arange(4).repeat(2, 1), use_cache=False)
    with pytest.raises(ValueError, match="needs packed rows"):
        make_collate(False, 3, 64, VARLEN_SDPA)


def test_collate_choice_and_schema_detection():
    from agentray.model.packing import PackedCollate

    assert is_packed(PACK_COLUMNS) and not is_packed(["input_ids", "labels", "num_tokens"])
    assert isinstance(make_collate(False, 0, 64, "flash_attention_2"), PadCollate)
    assert isinstance(make_collate(True, 0, 64, "flash_attention_2"), FlatPackCollate)
    assert isinstance(make_collate(True, 0, 64, VARLEN_SDPA), FlatPackCollate)
    assert make_collate(True, 0, 64, "sdpa").mask == "bool"
    assert make_collate(True, 0, 64, "eager").mask == "float"
    assert isinstance(make_collate(True, 0, 64, "sdpa"), PackedCollate)


# ---------------------------------------------------------------- a packed run end to end


def write_packed_shards(tokenizer_dir: str, out_dir: Path, groups: int = 4) -> list[dict]:
    """``groups`` packs of 3 examples each (packed by the project's packer), one shard per
    two packs; returns the examples."""
    examples = tokenized_rows(tokenizer_dir, repeats=2)[: 3 * groups]
    packs = []
    for g in range(groups):
        members = examples[3 * g : 3 * g + 3]
        width = sum(len(ex["input_ids"]) for ex in members)
        (pack,) = pack_examples(members, width)
        packs.append({key: _plain(pack[key]) for key in PACK_COLUMNS})
    out_dir.mkdir(parents=True, exist_ok=True)
    for k in range(0, groups, 2):
        pq.write_table(pa.Table.from_pylist(packs[k : k + 2]), out_dir / f"part-{k}.parquet")
    return examples


def _plain(value):
    return value.tolist() if isinstance(value, np.ndarray) else value


@pytest.mark.slow
def test_packed_zero3_run_starts_at_the_unpacked_loss_and_learns(
    tmp_path, tiny_model_dir, ray_local
):
    from transformers import AutoModelForCausalLM

    from agentray.train.trainer import run_train

    examples = write_packed_shards(tiny_model_dir, tmp_path / "packs")
    model = _model(tiny_model_dir, "sdpa")
    alone = _alone(model, examples)
    unpacked_loss = sum(s for s, _ in alone.values()) / sum(n for _, n in alone.values())

    cfg = TrainConfig(
        model=tiny_model_dir,
        data=str(tmp_path / "packs"),
        output=str(tmp_path / "out"),
        num_workers=2,
        zero_stage=3,
        # partition every parameter, however small, so a wrong save would show
        deepspeed={"zero_optimization": {"stage3_param_persistence_threshold": 0}},
        micro_batch_size=2,  # 2 workers x 2 packs: every step sees all 12 examples
        epochs=6,
        lr=3e-3,
        warmup_ratio=0.0,
        max_seq_len=256,
        shuffle=False,
    )
    longest = max(len(ex["input_ids"]) for ex in examples)
    with pytest.raises(ValueError, match=r"train.max_seq_len=\d+ is shorter than the longest pack"):
        run_train(cfg.model_copy(update={"max_seq_len": longest}), tmp_path, progress=False)

    summary = run_train(cfg, tmp_path, progress=False)
    history = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert summary["packed"] is True and summary["steps"] == 6
    # auto on CPU: packs run as one row per micro-batch, attention per example
    assert summary["attn_implementation"] == VARLEN_SDPA
    assert all(r["sequences"] == 12 for r in history)  # examples, not packs
    assert history[0]["tokens"] == sum(len(ex["input_ids"]) for ex in examples)
    # step 1 runs on the initial weights: packed, split over two ranks, it is the loss of
    # the twelve examples each computed alone
    assert history[0]["loss"] == pytest.approx(unpacked_loss, rel=1e-4)
    assert history[-1]["loss"] < history[0]["loss"] - 0.5
    assert all(r["grad_norm"] > 0 for r in history)

    # The saved model holds the weights after the last step (gathered from the ZeRO-3
    # partitions): its loss on the twelve examples, each computed alone here, is the one
    # the trainer logged for them as final_loss after that step.
    trained = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "model").eval()
    for name, tensor in trained.state_dict().items():
        assert tensor.shape == model.state_dict()[name].shape, name
    assert summary["final_loss"] == history[-1]["final_loss"] < history[-1]["loss"]
    assert mean_loss(trained, examples) == pytest.approx(
        summary["final_loss"], rel=0, abs=LOSS_ATOL
    )
