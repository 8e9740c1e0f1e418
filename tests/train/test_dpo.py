"""The DPO loss module on the tiny model, against computations written out by hand:
the chat-template rows and their masks, sequence log-probs token by token, the loss."""

from __future__ import annotations

import math

import pytest

from agentray.process.tokenize import encode_conversation
from agentray.records import to_conversations
from agentray.train.dpo import (
    IGNORE_INDEX,
    PairTooLong,
    collate_pairs,
    dpo_batch_loss,
    dpo_loss,
    encode_pair,
    pair_logps,
)

PROMPT = [{"role": "user", "content": "Task: click the search button on the page."}]
OPENING = [
    *PROMPT,
    {"role": "assistant", "content": "Action: click(3)"},
    {"role": "user", "content": "Observation: a search box appeared."},
]
PAIRS = [
    {
        "prompt": PROMPT,
        "chosen": [{"role": "assistant", "content": "Action: click(7)"}],
        "rejected": [{"role": "assistant", "content": "Action: type(2, hello world)"}],
    },
    {
        "prompt": OPENING,
        "chosen": [{"role": "assistant", "content": "Action: type(4, shoes)"}],
        "rejected": [
            {"role": "assistant", "content": "I am not sure."},
            {"role": "user", "content": "Observation: invalid action."},
            {"role": "assistant", "content": "Action: click(1)"},
        ],
    },
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager")
    return AutoTokenizer.from_pretrained(tiny_model_dir), model.eval()


def test_rows_are_the_chat_template_ids_with_the_continuation_labelled(tiny):
    tokenizer, _ = tiny
    for pair in PAIRS:
        encoded = encode_pair(tokenizer, pair, max_seq_len=4096)
        for side in ("chosen", "rejected"):
            row = encoded[side]
            full = list(
                tokenizer.apply_chat_template(
                    pair["prompt"] + pair[side], tokenize=True, return_dict=False
                )
            )
            assert row["input_ids"] == full
            prompt_len = len(
                tokenizer.apply_chat_template(pair["prompt"], tokenize=True, return_dict=False)
            )
            assert set(row["labels"][:prompt_len]) == {IGNORE_INDEX}  # the prompt: no loss
            labelled = tokenizer.decode([t for t in row["labels"] if t != IGNORE_INDEX])
            for message in pair[side]:
                assert (message["content"] in labelled) == (message["role"] == "assistant")
    # with a user-only prompt the masks are the SFT example's for the whole conversation
    pair = PAIRS[0]
    sft = encode_conversation(
        tokenizer, to_conversations(pair["prompt"] + pair["chosen"]), max_seq_len=4096
    )
    assert encode_pair(tokenizer, pair, 4096)["chosen"]["labels"] == sft["labels"]
    with pytest.raises(PairTooLong, match="max_seq_len=5"):
        encode_pair(tokenizer, pair, max_seq_len=5)


def _logp_token_by_token(model, ids: list[int], labels: list[int]) -> float:
    """Sum of log p(ids[t] | ids[:t]) over labelled t, one forward pass per token on the
    unpadded prefix: no shift, mask or padding logic shared with the module."""
    import torch

    total = 0.0
    with torch.no_grad():
        for t, label in enumerate(labels):
            if label == IGNORE_INDEX:
                continue
            logits = model(input_ids=torch.tensor([ids[:t]])).logits[0, -1].double()
            total += float(torch.log_softmax(logits, dim=-1)[ids[t]])
    return total


def test_sequence_logps_of_a_padded_batch_match_token_by_token(tiny):
    import torch

    tokenizer, model = tiny
    encoded = [encode_pair(tokenizer, pair, 4096) for pair in PAIRS]
    batch = collate_pairs(encoded, pad_id=tokenizer.pad_token_id)
    assert batch["input_ids"].shape[0] == 4  # 2 chosen, then 2 rejected
    with torch.no_grad():
        chosen, rejected = pair_logps(model, batch)
    for i, pair in enumerate(encoded):
        for side, got in (("chosen", chosen[i]), ("rejected", rejected[i])):
            expected = _logp_token_by_token(model, pair[side]["input_ids"], pair[side]["labels"])
            assert float(got) == pytest.approx(expected, rel=1e-4, abs=1e-3), (i, side)
            assert expected < 0


def _reference_loss(pc, pr, rc, rr, beta):
    x = beta * ((pc - rc) - (pr - rr))
    return math.log1p(math.exp(-x))  # -log sigmoid(x)


def test_dpo_loss_matches_the_formula_and_a_step_widens_the_margin(tiny, tiny_model_dir):
    import copy

    import torch

    values = [(-12.0, -15.5, -13.0, -14.0), (-30.0, -9.0, -28.0, -11.5)]
    tensors = [torch.tensor(column, dtype=torch.float64) for column in zip(*values, strict=True)]
    loss, metrics = dpo_loss(*tensors, beta=0.5)
    expected = sum(_reference_loss(*v, beta=0.5) for v in values) / len(values)
    assert float(loss) == pytest.approx(expected, rel=1e-9)
    assert metrics["rewards/accuracy"] == 0.5  # the first pair's margin > 0, the second's < 0

    tokenizer, model = tiny
    batch = collate_pairs(
        [encode_pair(tokenizer, p, 4096) for p in PAIRS], pad_id=tokenizer.pad_token_id
    )
    policy, reference = copy.deepcopy(model).train(), model
    loss, metrics = dpo_batch_loss(policy, reference, batch, beta=0.1)
    assert float(loss) == pytest.approx(math.log(2), abs=1e-5)  # policy == reference
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
    loss.backward()
    optimizer.step()
    after, metrics = dpo_batch_loss(policy, reference, batch, beta=0.1)
    assert float(after) < float(loss)
    assert metrics["rewards/margin"] > 0
