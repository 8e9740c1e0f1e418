"""The data card of a process run: counts, the realized mix, distributions, rejections.

``card_stats`` reduces the run's frames to numbers (they also go into the manifest);
``write_data_card`` writes ``data_card.md`` with its plots (matplotlib PNGs beside it), drawn
in a local temporary folder and then copied to the stage's folder (a path or URI).
"""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd

from agentray import storage
from agentray.process.config import ProcessConfig
from agentray.process.mix import MixPlan, realized_eta

PLOTS = {
    "rewards": "data_card_rewards.png",
    "turns": "data_card_turns.png",
    "lengths": "data_card_lengths.png",
    "rejected": "data_card_rejected.png",
}


def card_stats(
    examples: pd.DataFrame,
    agent_rows: pd.DataFrame,
    rejected: list[dict[str, Any]],
    plan: MixPlan,
    cfg: ProcessConfig,
) -> dict[str, Any]:
    """``examples``: the training examples (source, family, num_tokens, ...); ``agent_rows``:
    every agent record read (origin, family, reward, turns, reject_reason)."""
    by_source = examples.groupby("source")
    n = by_source.size().to_dict()
    tokens = by_source["num_tokens"].sum().to_dict()
    n_agent, n_general = int(n.get("agent", 0)), int(n.get("general", 0))
    by_family = examples.groupby("family").agg(
        records=("num_tokens", "size"),
        tokens=("num_tokens", "sum"),
        loss_tokens=("num_loss_tokens", "sum"),
    )
    kept = agent_rows[agent_rows["reject_reason"] == ""]
    return {
        "records": len(examples),
        "agent_records": n_agent,
        "general_records": n_general,
        "agent_unique_records": len(plan.agent_copies) - list(plan.agent_copies.values()).count(0),
        "agent_upsampled_copies": max(0, plan.agent_examples - len(plan.agent_copies)),
        "general_split_pieces": int(examples["id"].str.contains("#", regex=False).sum()),
        "mix_by": cfg.mix_by,
        "balance": cfg.balance,
        "eta_target": cfg.eta,
        "eta_realized": realized_eta(n_agent, n_general),
        "eta_realized_tokens": realized_eta(tokens.get("agent", 0), tokens.get("general", 0)),
        "mix_notes": plan.notes,
        "tokens": int(examples["num_tokens"].sum()),
        "loss_tokens": int(examples["num_loss_tokens"].sum()),
        "max_tokens": int(examples["num_tokens"].max()),
        "mean_tokens": round(float(examples["num_tokens"].mean()), 1),
        "truncated": int(examples["truncated"].sum()),
        "per_family": {f: {k: int(v) for k, v in row.items()} for f, row in by_family.iterrows()},
        "agent_read_by_origin": {
            str(k): int(v) for k, v in agent_rows.groupby("origin").size().items()
        },
        "agent_kept_by_family": {str(k): int(v) for k, v in kept.groupby("family").size().items()},
        "rejected": len(rejected),
        "rejected_by_reason": dict(
            Counter(f"{r['source']}: {_reason_kind(r['reason'])}" for r in rejected).most_common()
        ),
    }


def _reason_kind(reason: str) -> str:
    """Reasons grouped for counting: the part before any record-specific detail, turn
    numbers left out."""
    for marker in (" of ", " in turn "):
        if marker in reason and reason.startswith(("duplicate problem", "invalid action format")):
            return reason.split(marker)[0]
    return re.sub(r"\bturn \d+\b", "turn N", reason)


def write_data_card(
    stats: dict[str, Any],
    examples: pd.DataFrame,
    agent_rows: pd.DataFrame,
    cfg: ProcessConfig,
    out: str,
    packing: dict[str, Any] | None = None,
) -> str:
    """Writes the card and its plots into ``out``; returns the card's location."""
    with tempfile.TemporaryDirectory(prefix="agentray-data-card-") as tmp:
        _write_card(stats, examples, agent_rows, cfg, Path(tmp), packing)
        for plot in PLOTS.values():  # a plot of an earlier run that this one does not draw
            storage.remove(storage.join(out, plot))
        storage.upload_dir(tmp, out)
    return storage.join(out, "data_card.md")


def _write_card(stats, examples, agent_rows, cfg: ProcessConfig, out: Path, packing) -> None:
    plots = _plot_all(examples, agent_rows, stats, out)
    lines = [
        "# Data card: hybrid instruction-tuning set",
        "",
        f"Tokenizer `{cfg.model}`, chat template `{cfg.chat_template}`; max_seq_len "
        f"{cfg.max_seq_len}; seed {cfg.seed}.",
        f"Mix ({stats['mix_by']}, {stats['balance']}): eta target {stats['eta_target']:.3f}, "
        f"realized {_fmt(stats['eta_realized'])} by examples, "
        f"{_fmt(stats['eta_realized_tokens'])} by tokens "
        f"({stats['agent_records']} agent : {stats['general_records']} general examples; "
        f"{stats['agent_upsampled_copies']} extra agent copies, "
        f"{stats['general_split_pieces']} pieces of split general conversations).",
        *[f"Note: {note}" for note in stats["mix_notes"]],
        f"Tokens: {stats['tokens']} ({stats['loss_tokens']} with loss); mean "
        f"{stats['mean_tokens']}, max {stats['max_tokens']} per example; {stats['truncated']} "
        "examples cut at a turn boundary.",
    ]
    if packing:
        lines.append(
            f"Packing: {packing['packs']} packs of {packing['width']} tokens, "
            f"{packing['efficiency']:.1%} real tokens ({packing['strategy']})."
        )
    lines += ["", "| family | examples | tokens | loss tokens |", "| --- | ---: | ---: | ---: |"]
    lines += [
        f"| {f} | {v['records']} | {v['tokens']} | {v['loss_tokens']} |"
        for f, v in stats["per_family"].items()
    ]
    lines += ["", "Agent records read by origin: " + _pairs(stats["agent_read_by_origin"])]
    lines += ["Agent records kept by family: " + _pairs(stats["agent_kept_by_family"]), ""]
    lines += [f"![{name}]({path.name})" for name, path in plots.items()]
    lines += ["", f"## Set aside: {stats['rejected']} records (see rejected.jsonl)", ""]
    lines += [f"- {reason}: {n}" for reason, n in stats["rejected_by_reason"].items()] or ["- none"]
    (out / "data_card.md").write_text("\n".join(lines) + "\n")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def _plot_all(examples, agent_rows, stats, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawers = {
        "rewards": _plot_rewards,
        "turns": _plot_turns,
        "lengths": _plot_lengths,
        "rejected": _plot_rejected,
    }
    paths = {}
    for name, draw in drawers.items():
        fig, ax = plt.subplots(figsize=(6.5, 3.6))
        if draw(ax, examples, agent_rows, stats):
            fig.tight_layout()
            paths[name] = out / PLOTS[name]
            fig.savefig(paths[name], dpi=100)
        plt.close(fig)
    return paths


def _plot_rewards(ax, examples, agent_rows, stats) -> bool:
    rewards = agent_rows.assign(reward=pd.to_numeric(agent_rows["reward"], errors="coerce"))
    rewards = rewards.dropna(subset=["reward"])
    if rewards.empty:
        return False
    for family, rows in rewards.groupby("family"):
        ax.hist(rows["reward"], bins=20, range=(0, 1), alpha=0.5, label=str(family))
    ax.set(xlabel="episode reward", ylabel="trajectories", title="Rewards of collected episodes")
    ax.legend(fontsize=7)
    return True


def _plot_turns(ax, examples, agent_rows, stats) -> bool:
    kept = agent_rows[agent_rows["reject_reason"] == ""]
    if kept.empty:
        return False
    families = sorted(kept["family"].unique())
    ax.boxplot([kept[kept["family"] == f]["turns"] for f in families], tick_labels=families)
    ax.set(ylabel="agent turns", title="Agent turns per kept trajectory")
    return True


def _plot_lengths(ax, examples, agent_rows, stats) -> bool:
    for source, rows in examples.groupby("source"):
        ax.hist(rows["num_tokens"], bins=30, alpha=0.55, label=str(source))
    ax.set(xlabel="tokens per example", ylabel="examples", title="Example lengths")
    ax.legend()
    return True


def _plot_rejected(ax, examples, agent_rows, stats) -> bool:
    reasons = stats["rejected_by_reason"]
    if not reasons:
        return False
    labels = [r if len(r) <= 48 else r[:45] + "..." for r in reasons]
    ax.barh(labels[::-1], list(reasons.values())[::-1])
    ax.set(xlabel="records", title="Set aside, by reason")
    ax.tick_params(axis="y", labelsize=7)
    return True
