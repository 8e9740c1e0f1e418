"""The train stage's DPO side (``train.loss: dpo``): preference pairs in, DPO steps out.

On the driver, ``pairs_dataset`` reads ``train.dpo.pairs`` (the parquet or jsonl that
``agentray iterate`` writes under ``round-k/pairs``, or any file with ``prompt``,
``chosen`` and ``rejected`` chat messages), tokenizes every pair with ``dpo.encode_pair``
and the run's tokenizer, and sets aside the pairs that do not fit ``train.max_seq_len``
(either side longer: cutting would score a different continuation than the pair's; the
manifest counts and names them). Each row of the Ray Dataset is one pair.

On each worker, a frozen reference (the starting model, eval mode, no gradients) scores
every batch next to the policy. A batch holds the micro-batch's chosen sequences then its
rejected ones: packed into ``train.max_seq_len`` rows with the SFT packs' masks
(``pack_pairs``, ``train.dpo.packing``, the default) or one right-padded row each
(``collate_pairs``).
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from ray.data.collate_fn import NumpyBatchCollateFn

from agentray import storage
from agentray.train.config import LoraSettings, TrainConfig
from agentray.train.dpo import (
    IGNORE_INDEX,
    PairTooLong,
    collate_pairs,
    dpo_batch_loss,
    encode_pair,
    pack_pairs,
    sequences_in,
)

PAIR_COLUMNS = ("chosen_input_ids", "chosen_labels", "rejected_input_ids", "rejected_labels")
# Summed over micro-batches and ranks each optimizer step, like trainer.STAT_NAMES.
DPO_STAT_NAMES = ("loss_sum", "pairs", "chosen_sum", "rejected_sum", "correct", "loss_tokens")
NAMED_SKIPS = 50  # the manifest names this many of the pairs set aside (all are counted)


def pair_files(location: str) -> list[str]:
    """The pair files at ``location``: itself, or a folder's parquet files (else its jsonl:
    ``agentray iterate`` writes both formats of the same pairs)."""
    files = storage.list_files(location)
    parquet = [f for f in files if f.endswith(".parquet")]
    chosen = parquet or [f for f in files if f.endswith(".jsonl")]
    if not chosen:
        raise FileNotFoundError(f"train.dpo.pairs: no .parquet or .jsonl pairs at {location}")
    return chosen


def read_pairs(location: str) -> list[tuple[str, dict[str, Any]]]:
    """``(where, pair)`` for every pair at ``location``; ``where`` names its file and row."""
    import pyarrow.parquet as pq

    out = []
    for path in pair_files(location):
        if path.endswith(".parquet"):
            rows = pq.read_table(io.BytesIO(storage.read_bytes(path))).to_pylist()
        else:
            lines = storage.read_text(path).splitlines()
            rows = [json.loads(line) for line in lines if line.strip()]
        for i, row in enumerate(rows):
            missing = {"prompt", "chosen", "rejected"} - set(row)
            if missing:
                raise ValueError(f"{path} row {i}: a preference pair lacks {sorted(missing)}")
            out.append((f"{path}#{i}", row))
    return out


def tokenize_pairs(
    pairs: list[tuple[str, dict[str, Any]]], tokenizer: Any, max_seq_len: int
) -> tuple[list[dict[str, list[int]]], list[str]]:
    """(the pairs as token rows, the names of those set aside as too long)."""
    rows, too_long = [], []
    for where, pair in pairs:
        name = _pair_name(where, pair)
        try:
            encoded = encode_pair(tokenizer, pair, max_seq_len + 1)
        except PairTooLong:
            too_long.append(name)
            continue
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"train.dpo.pairs {where}: {err}") from err
        if any(len(encoded[side]["input_ids"]) > max_seq_len for side in encoded):
            too_long.append(name)
            continue
        rows.append(
            {f"{side}_{key}": encoded[side][key] for side in encoded for key in encoded[side]}
        )
    return rows, too_long


def _pair_name(where: str, pair: Mapping[str, Any]) -> str:
    if pair.get("task_id") and pair.get("chosen_id"):
        return f"{pair['task_id']}:{pair['chosen_id']}>{pair.get('rejected_id')}"
    return where


def pairs_dataset(cfg: TrainConfig, tokenizer_path: str):
    """(the Ray Dataset of tokenized pairs, its row count, manifest inputs)."""
    import ray.data
    from transformers import AutoTokenizer

    from agentray.model.tiny import resolve_model

    location = storage.absolute(cfg.dpo.pairs)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(tokenizer_path))
    pairs = read_pairs(location)
    if not pairs:
        raise ValueError(f"train.dpo.pairs {location}: no preference pairs in it")
    rows, too_long = tokenize_pairs(pairs, tokenizer, cfg.max_seq_len)
    if not rows:
        raise ValueError(
            f"train.dpo.pairs {location}: none of its {len(pairs)} pairs fits "
            f"train.max_seq_len={cfg.max_seq_len}"
        )
    ds = ray.data.from_items(rows)
    ds.context.enable_progress_bars = False
    inputs = {
        "pairs": location,
        "pairs_read": len(pairs),
        "pairs_too_long": len(too_long),
        "pairs_too_long_named": too_long[:NAMED_SKIPS],
    }
    return ds, len(rows), inputs


class PairCollate(NumpyBatchCollateFn):
    """A Ray Data batch of tokenized pairs -> ``pack_pairs``'s packed batch for
    ``attn_implementation`` (``packing``), else ``collate_pairs``'s padded one."""

    def __init__(
        self,
        pad_id: int,
        packing: bool = False,
        max_seq_len: int = 0,
        attn_implementation: str = "sdpa",
    ) -> None:
        self.pad_id = pad_id
        self.packing = packing
        self.max_seq_len = max_seq_len
        self.attn_implementation = attn_implementation

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        pairs = [
            {
                side: {
                    key: np.asarray(batch[f"{side}_{key}"][i]).tolist()
                    for key in ("input_ids", "labels")
                }
                for side in ("chosen", "rejected")
            }
            for i in range(len(batch["chosen_input_ids"]))
        ]
        if self.packing:
            return pack_pairs(pairs, self.pad_id, self.max_seq_len, self.attn_implementation)
        return collate_pairs(pairs, self.pad_id)


def load_reference(cfg: TrainConfig, model_path: str, ds_config: dict[str, Any], device):
    """The starting model, frozen: no adapters, no gradients, eval mode (no dropout)."""
    from agentray.train.engine import load_model

    plain = cfg.model_copy(update={"lora": LoraSettings(), "gradient_checkpointing": False})
    reference = load_model(plain, model_path, ds_config).to(device).eval()
    reference.requires_grad_(False)
    return reference


class PreferenceLoss:
    """DPO: the mean DPO loss over the micro-batch's pairs, the frozen ``reference`` scoring
    every batch next to the policy."""

    stat_names = DPO_STAT_NAMES

    def __init__(self, cfg: TrainConfig, reference) -> None:
        self.cfg = cfg
        self.reference = reference

    def collate(self, packed: bool, pad_id: int, max_seq_len: int, attn: str):
        return PairCollate(pad_id, self.cfg.dpo.packing, max_seq_len, attn)

    def step_values(self, engine, batch: dict[str, Any]) -> tuple[Any, list[float]]:
        """(the micro-batch's mean DPO loss, its ``DPO_STAT_NAMES`` values)."""
        dpo = self.cfg.dpo
        loss, metrics = dpo_batch_loss(engine, self.reference, batch, dpo.beta, dpo.label_smoothing)
        n = sequences_in(batch) // 2
        loss_tokens = float((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        values = [
            float(loss.detach()) * n,
            float(n),
            metrics["rewards/chosen"] * n,
            metrics["rewards/rejected"] * n,
            metrics["rewards/accuracy"] * n,
            loss_tokens,
        ]
        return loss, values

    def row(self, stats: list[float]) -> dict[str, Any]:
        """The metrics row's DPO entries from one step's summed values."""
        loss_sum, pairs, chosen, rejected, correct, loss_tokens = stats
        n = max(pairs, 1.0)
        return {
            "loss": loss_sum / n,
            "pairs": int(pairs),
            "loss_tokens": int(loss_tokens),
            "reward_chosen": chosen / n,
            "reward_rejected": rejected / n,
            "reward_margin": (chosen - rejected) / n,
            "reward_accuracy": correct / n,
        }
