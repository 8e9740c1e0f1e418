"""DPO pairs packed as SFT examples are (``pack_pairs``): every sequence's log-prob, the
loss and the gradients equal those of the right-padded batch (``collate_pairs``), for each
attention kernel's collate; a packing that lets sequences see each other does not."""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch
from test_dpo import PAIRS
from test_train_dpo import hand_made_pairs

from agentray.model.packing import packed_attention_mask
from agentray.model.varlen import VARLEN_SDPA, register
from agentray.train.dpo import (
    collate_pairs,
    dpo_batch_loss,
    encode_pair,
    pack_pairs,
    pair_logps,
    sequences_in,
)

# the comparisons run on this torch device (fp32), as test_train_packed's do
DEVICE = os.environ.get("AGENTRAY_TEST_DEVICE", "cpu")
LOGP_ATOL = 1e-4  # fp32 sums of ~30 token log-probs (~ -100 each side)
# "flat": the one padding-free row flash-attention gets (FlatPackCollate), run here on sdpa
KERNELS = ["sdpa", "eager", "flat", VARLEN_SDPA]


def _model(path: str, attn: str):
    from transformers import AutoModelForCausalLM

    if attn == VARLEN_SDPA:
        register()
    attn = "sdpa" if attn == "flat" else attn
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn)
    return model.to(DEVICE).eval()


def _on_device(batch: dict) -> dict:
    return {key: value.to(DEVICE) for key, value in batch.items()}


@pytest.fixture(scope="module")
def encoded(prompt_sensitive_model_dir):
    """Pairs of different lengths, one with a multi-turn rejected side (labels in pieces)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(prompt_sensitive_model_dir)
    pairs = [*PAIRS, *hand_made_pairs()[:4]]
    return [encode_pair(tokenizer, p, 4096) for p in pairs], tokenizer.pad_token_id


def _pack(encoded: list[dict], pad_id: int, attn: str) -> dict:
    lengths = [len(p[side]["input_ids"]) for p in encoded for side in ("chosen", "rejected")]
    width = max(lengths) + min(lengths) + 4  # a few sequences a row: several rows, padded
    return pack_pairs(encoded, pad_id, width, "flash_attention_2" if attn == "flat" else attn)


def _cross_talk(batch: dict, attn: str) -> dict:
    """The same rows, but each row's sequences attend to the ones before them in the row."""
    wrong = dict(batch)
    if "attention_mask" in batch:
        real = (batch["segment_ids"] > 0).long()  # one segment per row: plain causal
        dtype = batch["attention_mask"].dtype
        wrong["attention_mask"] = packed_attention_mask(
            real, dtype=None if dtype == torch.bool else dtype
        )
    else:  # flat rows: the sequences' bounds come from where position_ids restart
        width = batch["input_ids"].size(1)
        wrong["position_ids"] = torch.arange(width, device=DEVICE).expand_as(batch["position_ids"])
    return wrong


@pytest.mark.parametrize("attn", KERNELS)
def test_packed_pairs_score_every_sequence_as_the_padded_batch(
    prompt_sensitive_model_dir, encoded, attn
):
    encoded, pad_id = encoded
    n = 2 * len(encoded)
    padded = _on_device(collate_pairs(encoded, pad_id))
    batch = _on_device(_pack(encoded, pad_id, attn))
    segments, owners = batch["segment_ids"], batch["sequence_ids"]
    assert sequences_in(batch) == sequences_in(padded) == n
    assert torch.equal(owners < 0, segments == 0)  # -1 exactly on padding
    assert sorted(owners[owners >= 0].unique().tolist()) == list(range(n))
    for i, side in enumerate(p[s] for s in ("chosen", "rejected") for p in encoded):
        assert int((owners == i).sum()) == len(side["input_ids"]), i
    if attn in ("flat", VARLEN_SDPA):
        assert batch["input_ids"].shape == (1, int((padded["attention_mask"]).sum()))
    else:
        assert batch["input_ids"].size(0) < n and (segments == 2).any()  # really packed

    with torch.no_grad():
        expected = torch.cat(pair_logps(_model(prompt_sensitive_model_dir, "sdpa"), padded))
        model = _model(prompt_sensitive_model_dir, attn)
        got = torch.cat(pair_logps(model, batch))
        crossed = torch.cat(pair_logps(model, _cross_talk(batch, attn)))
    torch.testing.assert_close(got, expected, rtol=0, atol=LOGP_ATOL)
    # the comparison can fail: sequences that see their row's earlier ones score differently
    assert float((crossed - expected).abs().max()) > 100 * LOGP_ATOL


def _policy_and_reference(path: str, attn: str):
    """The model as the reference and, a few steps away from it, the policy (the same
    noise for every ``attn``): margins are not 0."""
    reference = _model(path, attn)
    policy = copy.deepcopy(reference)
    torch.manual_seed(1)
    with torch.no_grad():
        for param in policy.parameters():
            param.add_(0.01 * torch.randn_like(param))
    return policy, reference


def _step(policy, reference, batch: dict):
    loss, metrics = dpo_batch_loss(policy, reference, batch, beta=0.5)
    loss.backward()
    grads = {k: p.grad for k, p in policy.named_parameters() if p.grad is not None}
    return float(loss.detach()), metrics, grads


@pytest.mark.parametrize("attn", ["sdpa", VARLEN_SDPA])
def test_a_packed_dpo_step_has_the_padded_loss_and_gradients(
    prompt_sensitive_model_dir, encoded, attn
):
    encoded, pad_id = encoded
    padded = _on_device(collate_pairs(encoded, pad_id))
    # sdpa_varlen takes packed rows only: the padded batch runs on sdpa
    loss, metrics, grads = _step(*_policy_and_reference(prompt_sensitive_model_dir, "sdpa"), padded)
    packed = _on_device(_pack(encoded, pad_id, attn))
    p_loss, p_metrics, p_grads = _step(
        *_policy_and_reference(prompt_sensitive_model_dir, attn), packed
    )
    assert abs(loss - math.log(2)) > 0.01  # not the loss of policy == reference
    assert p_loss == pytest.approx(loss, rel=1e-5)
    for key, value in metrics.items():
        assert p_metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
    assert grads.keys() == p_grads.keys() and len(grads) > 0
    for key, grad in grads.items():
        # fp32 sums in another order: off by ~1e-6 of the tensor's largest entry
        scale = float(grad.abs().max())
        torch.testing.assert_close(p_grads[key], grad, rtol=1e-4, atol=1e-5 * scale, msg=key)
