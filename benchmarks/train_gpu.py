"""The trainer on one GPU: DeepSpeed ZeRO-3 + bf16 on packed 4096-token rows; tokens/s, MFU.

    python benchmarks/train_gpu.py [--steps 30] [--hidden-size 2048] [--layers 16]
        [--model PATH_OR_NAME] [--attn auto|sdpa|flash_attention_2] [--peak-tflops X]

Without --model it builds a Llama-architecture model locally (random weights, the tiny BPE
tokenizer, --hidden-size / --layers; ~0.9B parameters by default), so nothing is
downloaded. Data: expert trajectories + ShareGPT (eta = 0.2) tokenized with the model's
chat template and packed by best-fit into 4096-token rows, as the paper trains. It runs the
same run_train as `agentray train` (Ray Train, one worker, one GPU) and prints real
tokens/s and MFU (model FLOPs as in PaLM appendix B over the GPU's dense bf16 peak, looked
up from its name; --peak-tflops for others). Without a CUDA GPU it exits with code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def require_gpu() -> str:
    import torch

    if not torch.cuda.is_available():
        print(
            "benchmarks/train_gpu.py needs a CUDA GPU, and torch.cuda.is_available() is False "
            f"here (torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}). "
            "Run it on a GPU machine with a CUDA build of torch; on CPU, "
            "benchmarks/train_throughput.py measures the same trainer.",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return torch.cuda.get_device_name()


def packed_rows(model: str, max_seq_len: int, general: int, agent_per_family: int) -> list[dict]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from packing import expert_conversations, general_conversations, tokenize

    from agentray.envs.registry import family_names
    from agentray.model.packing import pack_examples
    from agentray.process.tokenize import load_tokenizer

    tokenizer = load_tokenizer(model)
    agent = [c for f in family_names() for c in expert_conversations(f, agent_per_family)]
    rows = tokenize(tokenizer, agent, "agent", max_seq_len)
    rows += tokenize(tokenizer, general_conversations(general), "general", max_seq_len)
    return pack_examples(rows, max_seq_len)


def write_packs(packs: list[dict], folder: Path) -> None:
    from agentray.model.packing import PACK_COLUMNS

    folder.mkdir(parents=True)
    plain = [
        {k: (p[k].tolist() if isinstance(p[k], np.ndarray) else p[k]) for k in PACK_COLUMNS}
        for p in packs
    ]
    pq.write_table(pa.Table.from_pylist(plain), folder / "part-0.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--model", default=None, help="HF name or path (default: build one)")
    parser.add_argument("--hidden-size", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--max-seq-len", type=int, default=4096)
    parser.add_argument("--micro-batch", type=int, default=1, help="packed rows per forward")
    parser.add_argument("--accumulation", type=int, default=4)
    parser.add_argument("--general", type=int, default=2000, help="ShareGPT records")
    parser.add_argument("--agent-per-family", type=int, default=50)
    parser.add_argument("--attn", default="auto", help="auto, sdpa or flash_attention_2")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None)
    args = parser.parse_args()
    device = require_gpu()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()

    from agentray.model.tiny import build_tiny_model
    from agentray.ray_utils import ensure_ray
    from agentray.train.config import TrainConfig
    from agentray.train.trainer import run_train

    work = Path(tempfile.mkdtemp(prefix="train-gpu-"))
    model = args.model or str(
        build_tiny_model(
            work / "model",
            hidden_size=args.hidden_size,
            num_layers=args.layers,
            num_heads=args.heads,
            max_positions=args.max_seq_len,
        )
    )
    packs = packed_rows(model, args.max_seq_len, args.general, args.agent_per_family)
    need = args.steps * args.micro_batch * args.accumulation
    if len(packs) < need:
        raise SystemExit(f"{len(packs)} packs < {need} needed; raise --general or lower --steps")
    write_packs(packs, work / "data")
    ensure_ray()
    cfg = TrainConfig(
        model=model,
        data=str(work / "data"),
        output=str(work / "out"),
        num_workers=1,
        use_gpu=True,
        zero_stage=3,
        precision="bf16",
        attn_implementation=args.attn,
        gradient_checkpointing=args.gradient_checkpointing,
        micro_batch_size=args.micro_batch,
        gradient_accumulation_steps=args.accumulation,
        max_steps=args.steps,
        max_seq_len=args.max_seq_len,
        lr=1e-5,
        log_every_steps=10,
        peak_tflops=args.peak_tflops,
        tensorboard=False,
    )
    summary = run_train(cfg, work, progress=True)
    mfu = summary["mfu"]
    print(
        f"\n{device}: ZeRO-3 + bf16, {len(packs)} packed rows of <= {args.max_seq_len} tokens, "
        f"{summary['steps']} steps of {args.micro_batch * args.accumulation} rows\n"
        f"tokens/s (real, step 1 left out): {summary['tokens_per_s']:,.0f}\n"
        f"MFU: {f'{mfu:.1%}' if mfu is not None else 'unknown peak (pass --peak-tflops)'}\n"
        f"loss {summary['first_loss']:.3f} -> {summary['last_loss']:.3f}; "
        f"total {time.perf_counter() - started:.0f} s (model + data + Ray start-up included)"
    )


if __name__ == "__main__":
    main()
