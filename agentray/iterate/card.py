"""The model card (``README.md`` in a round's model folder, the HF convention)."""

from __future__ import annotations

import json
from typing import Any

from agentray import storage
from agentray.config import PipelineConfig


def _manifest(stage_dir: str) -> dict[str, Any]:
    location = storage.join(stage_dir, "manifest.json")
    return storage.read_json(location) if storage.exists(location) else {}


def write_model_card(round_dir: str, k: int, cfg: PipelineConfig) -> str | None:
    """Data, recipe and scores of round ``k``'s model, from its stages' manifests; None
    where the round has no model folder."""
    model = storage.join(round_dir, "train", "model")
    if not storage.exists(storage.join(model, "config.json")):
        return None
    data = _manifest(storage.join(round_dir, "merge" if k else "collect"))
    process = _manifest(storage.join(round_dir, "process"))
    train = _manifest(storage.join(round_dir, "train"))
    scores_file = storage.join(round_dir, "eval", "scores.json")
    scores = storage.read_json(scores_file) if storage.exists(scores_file) else {}
    lines = [
        f"# agentray self-improvement round {k}",
        "",
        "## Data",
        "",
        _data_text(k, data),
        f"Process: {storage.join(round_dir, 'process')} (eta {cfg.process.eta}); counts:",
        "",
        "```json",
        json.dumps(process.get("counts", {}), indent=1, default=str)[:4000],
        "```",
        "",
        "## Recipe",
        "",
        f"- base model: `{train.get('inputs', {}).get('model', cfg.train.model)}` "
        f"(iterate.train_from: {cfg.iterate.train_from})",
        f"- epochs {cfg.train.epochs}, lr {cfg.train.lr}, max_seq_len {cfg.train.max_seq_len}",
        _loss_text(train),
        f"- code: {train.get('versions', {}).get('code', 'unknown')}",
        f"- lineage: `agentray lineage {model}`",
        "",
        "## Scores",
        "",
        "```json",
        json.dumps(scores.get("categories", scores), indent=1, default=str)[:4000],
        "```",
        "",
    ]
    return storage.write_text(storage.join(model, "README.md"), "\n".join(lines))


def _loss_text(train: dict[str, Any]) -> str:
    config, inputs = train.get("config", {}), train.get("inputs", {})
    if config.get("loss") != "dpo":
        return "- loss: sft"
    dpo = config.get("dpo", {})
    return (
        f"- loss: dpo (beta {dpo.get('beta')}, label_smoothing {dpo.get('label_smoothing')}) "
        f"on {inputs.get('rows')} pairs of `{inputs.get('pairs')}` "
        f"({inputs.get('pairs_too_long')} set aside as longer than max_seq_len)"
    )


def _data_text(k: int, data: dict[str, Any]) -> str:
    counts = data.get("counts", {})
    if k == 0:
        policy = data.get("config", {}).get("policy", {})
        return (
            f"Teacher trajectories ({policy.get('backend')}): {counts.get('episodes')} episodes.\n"
        )
    return (
        f"Merged trajectories: {counts.get('kept')} kept of {counts.get('read')} read "
        f"(by source: {counts.get('kept_by_source')}); exploration by round {k - 1}'s model: "
        f"{counts.get('exploration')}.\n"
    )
