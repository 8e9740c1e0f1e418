"""Training throughput: our trainer vs a plain single-process HF loop, and packed vs padded.

    python benchmarks/train_throughput.py [--steps 40] [--micro-batch 4] [--max-seq-len 1024]
        [--pack-len 2048] [--general 400] [--agent-per-family 10] [--model M]

Data: the paper's mix (eta = 0.2) of expert trajectories of every env family and ShareGPT
records, tokenized with the model's Llama-2-chat template and cut at --max-seq-len (the
helpers of benchmarks/packing.py), one example per row; the packed run reads the same
examples packed by best-fit into --pack-len rows (agentray.model.packing.pack_examples).

Runs, all on the same examples in the same order and the same model (the tiny default
unless --model):
  plain HF loop        one fresh process (cold, like a Ray worker), torch AdamW + warm-up/
                       cosine + clipping, padded batches of --micro-batch examples, 2 torch
                       threads (the machine's 2 cores)
  agentray, padded     run_train: Ray Data -> 1 Ray Train worker with 2 CPUs -> the torch
                       engine (train.engine auto, one rank), the same batches
  agentray, 2 workers  the same over 2 workers of 1 CPU (DeepSpeed ZeRO-2 data parallel,
                       what the quickstart runs): twice the examples per step
  agentray, packed     1 worker, --micro-batch-packed packed --pack-len rows per step
                       (default 2 x 2048: the token budget of a padded batch, 4 x 1024), sdpa
                       with the 4D block-diagonal mask (attention over the whole row)
  packed, varlen       the same packs joined into one row, sdpa on each example (sdpa_varlen, the
                       default for packs on CPU): attention over the examples only
flex_attention (block-sparse) is probed, not run: torch has no flex-attention backward on
CPU (the script says whether that still holds).
tokens/s counts real (non-padding) tokens per second of training steps, step 1 left out
(warm-up) in every run; "computed" counts the padded tokens the model ran on. Every
configuration runs --rounds times, interleaved (a shared machine's load drifts), and the
ratios compare the best runs; wall time includes Ray start-up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from packing import expert_conversations, general_conversations, tokenize
from rich.console import Console
from rich.table import Table

from agentray.envs.registry import family_names
from agentray.model.packing import PACK_COLUMNS, pack_examples, packing_efficiency
from agentray.model.tiny import TINY_MODEL, resolve_model
from agentray.process.tokenize import load_tokenizer

THREADS = 2
LR = 1e-3


def build_rows(args, tokenizer) -> list[dict]:
    agent = [c for f in family_names() for c in expert_conversations(f, args.agent_per_family)]
    general = general_conversations(args.general)
    rows = tokenize(tokenizer, agent, "agent", args.max_seq_len)
    rows += tokenize(tokenizer, general, "general", args.max_seq_len)
    random.Random(0).shuffle(rows)
    return rows


def write_parquet(rows: list[dict], columns, folder: Path) -> Path:
    folder.mkdir(parents=True)
    table = pa.Table.from_pylist(
        [
            {k: (r[k].tolist() if isinstance(r[k], np.ndarray) else r[k]) for k in columns}
            for r in rows
        ]
    )
    pq.write_table(table, folder / "part-0.parquet")
    return folder


def plain_hf_loop(model_path: str, rows: list[dict], args, pad_id: int) -> dict:
    """What one would write without Ray or DeepSpeed: the same loss, optimizer, schedule."""
    import torch
    from transformers import AutoModelForCausalLM, get_scheduler

    from agentray.train.batches import PadCollate, forward_loss, real_tokens

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95))
    scheduler = get_scheduler(
        "cosine",
        optimizer,
        num_warmup_steps=math.ceil(0.03 * args.steps),
        num_training_steps=args.steps,
    )
    collate = PadCollate(pad_id, args.max_seq_len)
    seconds, tokens, computed = 0.0, 0, 0
    for step in range(args.steps):
        chunk = rows[step * args.micro_batch : (step + 1) * args.micro_batch]
        t0 = time.perf_counter()
        batch = collate(
            {
                "input_ids": _ragged([r["input_ids"] for r in chunk]),
                "labels": _ragged([r["labels"] for r in chunk]),
            }
        )
        loss_sum, n_loss = forward_loss(model, batch)
        (loss_sum / n_loss.clamp(min=1)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step > 0:  # step 1 is warm-up, as in run_train's summary
            seconds += time.perf_counter() - t0
            tokens += int(real_tokens(batch))
            computed += batch["input_ids"].numel()
    return {
        "tokens_per_s": tokens / seconds,
        "padded_tokens_per_s": computed / seconds,
        "steps": args.steps,
        "wall_s": time.perf_counter() - started,
    }


def _ragged(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = np.asarray(v, dtype=np.int64)
    return out


def agentray_run(model_path: str, data: Path, out: Path, args, **overrides) -> dict:
    from agentray.train.config import TrainConfig
    from agentray.train.trainer import run_train

    settings = {
        "num_workers": 1,
        "resources_per_worker": {"CPU": THREADS},
        "zero_stage": 2,
        "micro_batch_size": args.micro_batch,
        "max_steps": args.steps,
        "max_seq_len": args.max_seq_len,
        "lr": LR,
        "shuffle": False,
        "log_every_steps": args.steps,
        "tensorboard": False,
    } | overrides
    cfg = TrainConfig(model=model_path, data=str(data), output=str(out), **settings)
    return run_train(cfg, out.parent, progress=False)


PLAIN = "plain HF loop (1 process, 2 threads)"
RUNS = (
    PLAIN,
    "agentray, padded (1 worker x 2 CPUs)",
    "agentray, padded (2 workers x 1 CPU)",
    "agentray, packed, 4D mask (1 worker x 2 CPUs)",
    "agentray, packed, sdpa_varlen (1 worker x 2 CPUs)",
)


def flex_backward_on_cpu() -> str:
    """Whether torch's flex_attention can train on CPU here (one tiny backward)."""
    import torch
    from torch.nn.attention.flex_attention import flex_attention

    q = torch.randn(1, 1, 16, 8, requires_grad=True)
    try:
        flex_attention(q, q, q).sum().backward()
    except NotImplementedError as e:
        return f"flex_attention not run: {e}"
    return "flex_attention has a CPU backward in this torch: worth a column"


def plain_in_fresh_process(padded_dir: Path, args) -> dict:
    """The plain loop in a new process, cold like a Ray worker (on CPU the first batch of
    each new shape pays for building its kernels)."""
    command = [sys.executable, __file__, "--plain-from", str(padded_dir)]
    for flag in ("steps", "micro_batch", "max_seq_len", "model"):
        command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def read_rows(folder: Path) -> list[dict]:
    return pq.read_table(folder).to_pylist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per run")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each configuration")
    parser.add_argument("--micro-batch", type=int, default=4, help="examples per padded batch")
    parser.add_argument(
        "--micro-batch-packed",
        type=int,
        default=2,
        help="packs per batch (2 x 2048: the padded batch's token budget, 4 x 1024)",
    )
    parser.add_argument("--max-seq-len", type=int, default=1024, help="examples are cut here")
    parser.add_argument("--pack-len", type=int, default=2048, help="tokens per packed row")
    parser.add_argument("--general", type=int, default=400, help="ShareGPT records")
    parser.add_argument("--agent-per-family", type=int, default=10, help="expert episodes")
    parser.add_argument("--model", default=TINY_MODEL)
    parser.add_argument("--plain-from", default=None, help=argparse.SUPPRESS)  # subprocess
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model_path = resolve_model(args.model)
    tokenizer = load_tokenizer(args.model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if args.plain_from:
        print(json.dumps(plain_hf_loop(model_path, read_rows(Path(args.plain_from)), args, pad_id)))
        return
    console = Console(width=120)
    t_start = time.perf_counter()

    from agentray.ray_utils import ensure_ray

    rows = build_rows(args, tokenizer)
    packs = pack_examples(rows, args.pack_len)
    # every run has enough rows for --steps steps (2 workers: twice the examples)
    need = 2 * args.steps * args.micro_batch
    if len(rows) < need or len(packs) < args.steps * args.micro_batch_packed:
        raise SystemExit(
            f"{len(rows)} examples / {len(packs)} packs are too few for {args.steps} steps; "
            "raise --general or lower --steps"
        )
    lengths = sorted(r["num_tokens"] for r in rows)
    console.print(
        f"data: {len(rows)} examples ({sum(lengths):,} tokens, median {lengths[len(lengths) // 2]}, "
        f"max {lengths[-1]}) -> {len(packs)} packs of <= {args.pack_len} "
        f"({packing_efficiency(packs, args.pack_len):.1%} full); model {args.model}; "
        f"{args.steps} steps per run, {args.rounds} rounds"
    )

    work = Path(tempfile.mkdtemp(prefix="train-throughput-"))
    padded_dir = write_parquet(rows, ("id", "input_ids", "labels"), work / "padded")
    packed_dir = write_parquet(packs, PACK_COLUMNS, work / "packed")
    ensure_ray(num_cpus=2 * THREADS)
    results: dict[str, list[dict]] = {name: [] for name in RUNS}
    for round_ in range(args.rounds):  # interleaved: a shared machine's load drifts
        out = work / f"round{round_}"
        results[RUNS[0]].append(plain_in_fresh_process(padded_dir, args))
        results[RUNS[1]].append(agentray_run(model_path, padded_dir, out / "a" / "out", args))
        results[RUNS[2]].append(
            agentray_run(
                model_path, padded_dir, out / "b" / "out", args, num_workers=2,
                resources_per_worker=None,
            )
        )  # fmt: skip
        for k, attn in ((3, "sdpa"), (4, "sdpa_varlen")):
            results[RUNS[k]].append(
                agentray_run(
                    model_path, packed_dir, out / f"c{k}" / "out", args,
                    micro_batch_size=args.micro_batch_packed, max_seq_len=args.pack_len,
                    attn_implementation=attn,
                )
            )  # fmt: skip

    table = Table(title="training throughput (real tokens/s, step 1 left out; best of the rounds)")
    columns = ["run", *(f"round {i + 1}" for i in range(args.rounds)), "best", "computed/s"]
    for column in [*columns, "real share", "wall s"]:
        table.add_column(column, justify="left" if column == "run" else "right")
    best = {}
    for name, runs in results.items():
        top = max(runs, key=lambda r: r["tokens_per_s"])
        best[name] = top["tokens_per_s"]
        table.add_row(
            name,
            *(f"{r['tokens_per_s']:,.0f}" for r in runs),
            f"{top['tokens_per_s']:,.0f}",
            f"{top['padded_tokens_per_s']:,.0f}",
            f"{top['tokens_per_s'] / top['padded_tokens_per_s']:.1%}",
            f"{top['wall_s']:.1f}",
        )
    console.print(table)
    plain, ours, ours2, packed, varlen = (best[name] for name in RUNS)
    console.print(
        f"agentray 1 worker / plain loop: {ours / plain:.2f}x the real tokens/s; "
        f"2 workers / plain: {ours2 / plain:.2f}x; packed / padded (agentray, 1 worker): "
        f"{packed / ours:.2f}x (4D mask), {varlen / ours:.2f}x (sdpa_varlen) real tokens/s; "
        f"sdpa_varlen / 4D mask: {varlen / packed:.2f}x"
    )
    console.print(flex_backward_on_cpu())
    console.print(f"total {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
