"""Direct Preference Optimization (Rafailov et al., 2023) on our token rows.

A preference pair (``prompt``, ``chosen``, ``rejected``: chat messages, as
``agentray.iterate.pairs`` writes them) becomes two rows, prompt + chosen and prompt +
rejected, templated with the model's chat template exactly as ``apply_chat_template``
renders the whole conversation; labels carry the tokens of the continuation's assistant
turns and -100 everywhere else (the prompt, observations, padding), as the SFT examples do.

    loss = -log sigmoid(beta * ((log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x))))

with each log-probability the sum over the labelled tokens. The trainer's step calls
``pair_logps`` for the policy and (under no_grad) for the reference model, then ``dpo_loss``.

A micro-batch's 2B sequences come either right-padded, one per row (``collate_pairs``), or
packed (``pack_pairs``): the SFT packer and collate (``pack_examples``, ``make_collate``:
the 4D block-diagonal mask, or one padding-free row for flash-attention and sdpa_varlen)
plus ``sequence_ids``, which of the 2B sequences each token belongs to, so the per-token
log-probs sum back into per-sequence ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentray.model.packing import pack_examples
from agentray.train.batches import IGNORE_INDEX, PACKED_COLUMNS, label_token_losses, make_collate

Messages = Sequence[Mapping[str, str]]


class PairTooLong(ValueError):
    """Cut at max_seq_len, one side of a pair has no continuation token left to score."""


def _rendered_prefixes(tokenizer: Any, chat: list[dict[str, str]]) -> list[str]:
    """The rendered text after each message; each must extend the one before (the chat
    template is prefix-stable, as the process stage checks)."""
    texts: list[str] = []
    for k in range(1, len(chat) + 1):
        text = tokenizer.apply_chat_template(chat[:k], tokenize=False)
        if texts and not text.startswith(texts[-1]):
            raise ValueError(f"the chat template is not prefix-stable at message {k}")
        texts.append(text)
    return texts


def encode_side(
    tokenizer: Any, prompt: Messages, continuation: Messages, max_seq_len: int
) -> dict[str, list[int]]:
    """``input_ids`` of prompt + continuation (``apply_chat_template(..., tokenize=True)``'s
    ids) and ``labels``: a token is labelled when it starts inside an assistant message of
    the continuation (its content and the template's closing tokens)."""
    chat = [{"role": m["role"], "content": m["content"]} for m in [*prompt, *continuation]]
    texts = _rendered_prefixes(tokenizer, chat)
    starts = ["", *texts[:-1]]
    spans = [
        (len(starts[i]), len(texts[i]))
        for i in range(len(prompt), len(chat))
        if chat[i]["role"] == "assistant"
    ]
    encoded = tokenizer(texts[-1], add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])[:max_seq_len]
    labels = [
        tok if any(s <= start < e for s, e in spans) else IGNORE_INDEX
        for tok, (start, _) in zip(ids, encoded["offset_mapping"], strict=False)
    ]
    if all(label == IGNORE_INDEX for label in labels):
        raise PairTooLong(f"no continuation token within max_seq_len={max_seq_len}")
    return {"input_ids": ids, "labels": labels}


def encode_pair(tokenizer: Any, pair: Mapping[str, Any], max_seq_len: int) -> dict[str, Any]:
    """``{"chosen": {input_ids, labels}, "rejected": {...}}`` of one preference row."""
    return {
        side: encode_side(tokenizer, pair["prompt"], pair[side], max_seq_len)
        for side in ("chosen", "rejected")
    }


def collate_pairs(pairs: Sequence[Mapping[str, Any]], pad_id: int) -> dict[str, Any]:
    """Encoded pairs -> one right-padded batch: the B chosen rows, then the B rejected rows
    (one forward pass scores both), with ``attention_mask`` and -100 labels on padding."""
    import torch

    rows = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        ids[i, :n] = torch.tensor(row["input_ids"], dtype=torch.long)
        labels[i, :n] = torch.tensor(row["labels"], dtype=torch.long)
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def pack_pairs(
    pairs: Sequence[Mapping[str, Any]], pad_id: int, max_seq_len: int, attn_implementation: str
) -> dict[str, Any]:
    """Encoded pairs -> one packed batch of their 2B sequences (chosen_0..chosen_{B-1},
    rejected_0..: sequence i is ``collate_pairs``'s row i) in rows of at most ``max_seq_len``
    tokens, collated as the SFT packs are for ``attn_implementation``, plus ``sequence_ids``
    aligned with ``input_ids`` (-1 on padding)."""
    rows = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    examples = [
        {"id": str(i), "input_ids": r["input_ids"], "labels": r["labels"]}
        for i, r in enumerate(rows)
    ]
    packs = pack_examples(examples, max_seq_len)
    collate = make_collate(True, pad_id, max_seq_len, attn_implementation)
    batch = collate({key: [p[key] for p in packs] for key in PACKED_COLUMNS})
    members = [[int(i) for i in p["example_ids"]] for p in packs]
    batch["sequence_ids"] = _sequence_ids(batch["segment_ids"], members)
    return batch


def _sequence_ids(segment_ids: Any, members: list[list[int]]) -> Any:
    """Segment k of a row -> its sequence. The collate keeps a row per pack (segments 1..k
    in each) or joins the packs into one row (segments numbered on across packs)."""
    import torch

    if segment_ids.size(0) != len(members):
        members = [[i for pack in members for i in pack]]
    table = torch.full((len(members), 1 + max(map(len, members))), -1, dtype=torch.long)
    for row, ids in enumerate(members):
        table[row, 1 : 1 + len(ids)] = torch.tensor(ids, dtype=torch.long)
    return torch.gather(table, 1, segment_ids)


def sequences_in(batch: Mapping[str, Any]) -> int:
    """The 2B sequences of a pair batch, padded or packed (every sequence has tokens)."""
    if "sequence_ids" in batch:
        return int(batch["sequence_ids"].max()) + 1
    return int(batch["input_ids"].size(0))


def pair_logps(model: Any, batch: Mapping[str, Any]) -> tuple[Any, Any]:
    """(chosen, rejected) sequence log-probs of a ``collate_pairs`` or ``pack_pairs`` batch
    under ``model``: per sequence, the sum of log p(token) over its labelled tokens (a
    padded batch: one sequence per row; packs: added up by the ``sequence_ids`` of their
    label positions)."""
    logps = -label_token_losses(model, batch)
    if "sequence_ids" in batch:
        owners = batch["sequence_ids"][:, 1:]
        scored = batch["labels"][:, 1:] != IGNORE_INDEX
        sums = logps.new_zeros(sequences_in(batch))
        logps = sums.index_add(0, owners[scored], logps[scored])
    else:
        logps = logps.sum(dim=-1)
    half = logps.shape[0] // 2
    return logps[:half], logps[half:]


def dpo_loss(
    policy_chosen: Any,
    policy_rejected: Any,
    reference_chosen: Any,
    reference_rejected: Any,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> tuple[Any, dict[str, float]]:
    """The mean DPO loss over the pairs (``label_smoothing``: the conservative DPO of
    Mitchell, 2023; 0 is plain DPO) and metrics: the implicit rewards, their margin, and
    how often the chosen one's reward is higher."""
    import torch.nn.functional as F

    chosen_rewards = beta * (policy_chosen - reference_chosen)
    rejected_rewards = beta * (policy_rejected - reference_rejected)
    margin = chosen_rewards - rejected_rewards
    losses = -(1 - label_smoothing) * F.logsigmoid(margin) - label_smoothing * F.logsigmoid(-margin)
    metrics = {
        "rewards/chosen": float(chosen_rewards.detach().mean()),
        "rewards/rejected": float(rejected_rewards.detach().mean()),
        "rewards/margin": float(margin.detach().mean()),
        "rewards/accuracy": float((margin > 0).float().mean()),
    }
    return losses.mean(), metrics


def dpo_batch_loss(
    policy: Any,
    reference: Any,
    batch: Mapping[str, Any],
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> tuple[Any, dict[str, float]]:
    """One step's loss: the policy's log-probs with gradients, the reference's without."""
    import torch

    policy_chosen, policy_rejected = pair_logps(policy, batch)
    with torch.no_grad():
        reference_chosen, reference_rejected = pair_logps(reference, batch)
    return dpo_loss(
        policy_chosen, policy_rejected, reference_chosen, reference_rejected, beta, label_smoothing
    )
