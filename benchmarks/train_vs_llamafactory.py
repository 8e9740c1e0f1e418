"""agentray's trainer vs LLaMA-Factory, side by side: real tokens/s per optimizer step.

    python benchmarks/train_vs_llamafactory.py [--steps 20] [--rounds 1] [--run-dir DIR]
        [--lf-venv /work/lf-venv] [--no-deepspeed] [--block-mask]

Data: the quickstart's training examples (configs/quickstart.yaml: 48 expert episodes of
the six held-in families + 192 ShareGPT records, 240 examples). ``--run-dir`` holds a
quickstart run; without ``process/train`` there, ``agentray collect`` and ``agentray
process`` make it first. agentray trains on the process stage's packs (best-fit, 2048
tokens, attention kept per example); LLaMA-Factory gets the same 240 examples converted
to its ShareGPT format (``dataset_info.json`` beside them) and packs them itself with
``neat_packing`` (its greedy knapsack into 2048-token rows, block-diagonal 4D mask: attention
kept per example too). LLaMA-Factory's ShareGPT format trains on every assistant turn: it
cannot mask demonstration turns, which AgentTuning needs (agentray's masks do).

Both train the tiny model (agentray/model/tiny.py, built locally) for --steps optimizer
steps from the same weights: fp32 on CPU, one process with 2 torch threads (agentray: one
Ray Train worker with 2 CPUs), 2 packs per step, AdamW (betas 0.9/0.95), lr 2e-3, 3% warm-up
then cosine, clipping at 1.0. Real tokens are the non-padding tokens; a step's time runs from
the end of the previous step (first: the start of training) to its end, data loading
included, and step 1 (warm-up) is left out of the means. Runs alternate (--rounds): a shared
machine's load drifts.

agentray runs twice per round: with its defaults for one worker (``train.engine: auto`` ->
the torch engine; ``attn_implementation: auto`` -> sdpa_varlen for packs on CPU) and with the
DeepSpeed ZeRO-2 engine, unless --no-deepspeed; ``--block-mask`` adds a torch-engine run with
sdpa and the 4D block-diagonal mask (the default before 2026-12-07).

LLaMA-Factory runs in its own virtualenv (``bash scripts/install.sh --llamafactory``, with
AGENTRAY_LF_VENV=--lf-venv), started by this script under that venv's python with
``--lf-side`` (that half imports nothing from agentray).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACK_LEN = 2048
PACKS_PER_STEP = 2
LR = 2e-3
THREADS = 2


# ---------------------------------------------------------------- LLaMA-Factory side


def lf_side(spec_path: str) -> None:
    """Runs under LLaMA-Factory's venv: trains and prints one JSON line of step timings."""
    import torch
    from llamafactory.train.tuner import run_exp
    from transformers import TrainerCallback

    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(THREADS)
    pad_id = spec["pad_id"]
    steps: list[dict] = []
    setup: dict = {}

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.tokens = 0
            self.last = 0.0

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            model.register_forward_pre_hook(self._count, with_kwargs=True)
            setup.update(attn=model.config._attn_implementation, threads=torch.get_num_threads())
            self.last = time.perf_counter()

        def _count(self, module, args, kwargs):
            if module.training:
                self.tokens += int((kwargs["input_ids"] != pad_id).sum())

        def on_step_end(self, args, state, control, **kwargs):
            now = time.perf_counter()
            steps.append({"step": state.global_step, "tokens": self.tokens, "s": now - self.last})
            self.tokens, self.last = 0, now

    started = time.perf_counter()
    run_exp(args=spec["args"], callbacks=[StepClock()])
    print(json.dumps({"steps": steps, "wall_s": time.perf_counter() - started, **setup}))


def lf_args(model_dir: str, data_dir: Path, out_dir: Path, steps: int) -> dict:
    return {
        "model_name_or_path": model_dir,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "full",
        "dataset": "quickstart",
        "dataset_dir": str(data_dir),
        "template": "llama2",
        "cutoff_len": PACK_LEN,
        "neat_packing": True,  # packing, attention kept inside each example
        "flash_attn": "sdpa",
        "overwrite_cache": True,
        "preprocessing_num_workers": 1,
        "output_dir": str(out_dir),
        "overwrite_output_dir": True,
        "per_device_train_batch_size": PACKS_PER_STEP,
        "gradient_accumulation_steps": 1,
        "learning_rate": LR,
        "lr_scheduler_type": "cosine",
        "warmup_ratio": 0.03,
        "max_steps": steps,
        "adam_beta1": 0.9,
        "adam_beta2": 0.95,
        "weight_decay": 0.0,
        "max_grad_norm": 1.0,
        "logging_steps": 10_000,
        "save_strategy": "no",
        "report_to": "none",
        "use_cpu": True,
        "bf16": False,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "seed": 0,
    }


# ---------------------------------------------------------------- agentray side


def quickstart_data(run_dir: Path) -> Path:
    """``run_dir/process/train``, made by the quickstart's collect and process if missing."""
    train = run_dir / "process" / "train"
    if not list(train.glob("*.parquet")):
        for stage in ("collect", "process"):
            command = [sys.executable, "-m", "agentray.cli", stage]
            command += [str(ROOT / "configs" / "quickstart.yaml"), "--run-dir", str(run_dir)]
            print(f"[bench] agentray {stage} -> {run_dir}", flush=True)
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return train


def examples_as_sharegpt(run_dir: Path, train_dir: Path) -> list[dict]:
    """The examples inside the packs, as LLaMA-Factory ShareGPT records: each record's turns
    (a conversation the process stage split, ``<id>#k``, as its k-th piece; turn ``loss``
    flags dropped: that format has no per-turn mask)."""
    import pyarrow.parquet as pq

    from agentray.process.general import classify_general, iter_general

    wanted = [i for ids in pq.read_table(train_dir).column("example_ids").to_pylist() for i in ids]
    found: dict[str, list[dict]] = {}
    for file in sorted((run_dir / "process" / "agentinstruct").glob("*.jsonl")):
        for line in file.read_text().splitlines():
            record = json.loads(line)
            found[record["id"]] = record["conversations"]
    needed = {i.split("#")[0] for i in wanted if i.startswith("sharegpt_")}
    for index, record in enumerate(iter_general(None)):
        if not needed - found.keys():
            break
        general = classify_general(record, index)
        if general["id"] in needed and general["conversations"]:
            found[general["id"]] = json.loads(general["conversations"])
    missing = [i for i in wanted if i.split("#")[0] not in found]
    if missing:
        raise SystemExit(f"{len(missing)} examples of {train_dir} not found, e.g. {missing[:3]}")
    split = _Splitter(run_dir / "process" / "tokenizer")
    return [{"conversations": split.piece(found[i.split("#")[0]], i)} for i in wanted]


class _Splitter:
    """The turns of each piece the process stage made of a conversation (its own split:
    up to the last turn that fits in the pack length, the next piece from the next user
    turn, the system prompt kept)."""

    def __init__(self, tokenizer_dir: Path) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)

    def piece(self, turns: list[dict], example_id: str) -> list[dict]:
        from agentray.process.tokenize import _encode_messages, _from_next_user_turn, to_messages

        k = int(example_id.split("#")[1]) if "#" in example_id else 0
        messages = to_messages(turns)
        system = messages[:1] if messages and messages[0]["role"] == "system" else []
        for _ in range(k + 1):
            _, used = _encode_messages(self.tokenizer, messages, PACK_LEN)
            piece, rest = messages[:used], _from_next_user_turn(messages[used:])
            messages = system + rest
        roles = {"user": "human", "assistant": "gpt", "system": "system"}
        return [{"from": roles[m["role"]], "value": m["content"]} for m in piece]


def write_lf_dataset(records: list[dict], folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "quickstart.json").write_text(json.dumps(records))
    info = {"quickstart": {"file_name": "quickstart.json", "formatting": "sharegpt"}}
    (folder / "dataset_info.json").write_text(json.dumps(info))
    return folder


def agentray_steps(model_dir: str, data: Path, out: Path, steps: int, **overrides) -> dict:
    from agentray.train.config import TrainConfig
    from agentray.train.metrics import METRICS_JSONL
    from agentray.train.trainer import run_train

    cfg = TrainConfig(
        model=model_dir,
        data=str(data),
        output=str(out),
        num_workers=1,
        resources_per_worker={"CPU": THREADS},
        micro_batch_size=PACKS_PER_STEP,
        max_steps=steps,
        max_seq_len=PACK_LEN,
        lr=LR,
        log_every_steps=steps,
        tensorboard=False,
        **overrides,
    )
    started = time.perf_counter()
    summary = run_train(cfg, str(out.parent), progress=False)
    history = [json.loads(line) for line in (out / METRICS_JSONL).read_text().splitlines()]
    return {
        "steps": [{"step": r["step"], "tokens": r["tokens"], "s": r["step_s"]} for r in history],
        "wall_s": time.perf_counter() - started,
        "fit_s": summary["fit_s"],
    }


def lf_steps(lf_python: Path, spec: dict, work: Path) -> dict:
    spec_path = work / "lf_spec.json"
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)  # nothing of agentray's environment
    done = subprocess.run(
        [str(lf_python), __file__, "--lf-side", str(spec_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
    )
    if done.returncode != 0:
        raise SystemExit(f"LLaMA-Factory failed (rc {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_rate(run: dict) -> float:
    rates = sorted(s["tokens"] / s["s"] for s in run["steps"][1:])
    return rates[len(rates) // 2]


def rate(run: dict) -> float:
    timed = run["steps"][1:]
    return sum(s["tokens"] for s in timed) / sum(s["s"] for s in timed)


# ---------------------------------------------------------------- report


def report(runs: dict[str, list[dict]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    names = list(runs)
    lf, ours = names[0], names[1]
    for round_ in range(len(runs[lf])):
        table = Table(title=f"round {round_ + 1}: real tokens/s per step")
        for column in ["step", *names, f"{ours} / {lf}"]:
            table.add_column(column, justify="right")
        by_name = {n: runs[n][round_]["steps"] for n in names}
        for k in range(min(len(v) for v in by_name.values())):
            values = [by_name[n][k]["tokens"] / by_name[n][k]["s"] for n in names]
            table.add_row(
                str(k + 1), *(f"{v:,.0f}" for v in values), f"{values[1] / values[0]:.2f}x"
            )
        console.print(table)
    summary = Table(title="steps 2.. of every round (step 1: warm-up)")
    columns = ["run", "real tokens/s (each round)", "vs LLaMA-Factory", "median step", "wall s"]
    for column in [*columns, "tokens"]:
        summary.add_column(column, justify="left" if column == "run" else "right")
    for name in names:
        rates = [rate(r) for r in runs[name]]
        ratio = [rate(r) / rate(b) for r, b in zip(runs[name], runs[lf], strict=True)]
        summary.add_row(
            name,
            " / ".join(f"{x:,.0f}" for x in rates),
            " / ".join(f"{x:.2f}x" for x in ratio),
            " / ".join(f"{median_rate(r):,.0f}" for r in runs[name]),
            " / ".join(f"{r['wall_s']:.1f}" for r in runs[name]),
            " / ".join(f"{sum(s['tokens'] for s in r['steps']):,}" for r in runs[name]),
        )
    console.print(summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    parser.add_argument("--rounds", type=int, default=1, help="alternating runs of each side")
    parser.add_argument("--run-dir", default="runs/quickstart", help="a quickstart run")
    parser.add_argument("--lf-venv", default=os.environ.get("AGENTRAY_LF_VENV", ".lf-venv"))
    parser.add_argument("--no-deepspeed", action="store_true", help="skip agentray+DeepSpeed")
    parser.add_argument(
        "--block-mask", action="store_true", help="also agentray with sdpa and the 4D mask"
    )
    parser.add_argument("--lf-side", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lf_side:
        lf_side(args.lf_side)
        return
    lf_python = Path(args.lf_venv) / "bin" / "python"
    if not lf_python.exists():
        raise SystemExit(
            f"no LLaMA-Factory venv at {args.lf_venv}: "
            f"AGENTRAY_LF_VENV={args.lf_venv} bash scripts/install.sh --llamafactory"
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from agentray.model.tiny import TINY_MODEL, resolve_model
    from agentray.ray_utils import ensure_ray

    run_dir = Path(args.run_dir).resolve()
    train = quickstart_data(run_dir)
    model_dir = resolve_model(TINY_MODEL)
    work = Path(tempfile.mkdtemp(prefix="train-vs-lf-"))
    records = examples_as_sharegpt(run_dir, train)
    data_dir = write_lf_dataset(records, work / "lf-data")
    from transformers import AutoTokenizer

    pad_id = AutoTokenizer.from_pretrained(model_dir).pad_token_id
    print(f"[bench] {len(records)} examples; model {model_dir}; work {work}", flush=True)
    ensure_ray(num_cpus=THREADS)
    variants = {"agentray (torch engine)": {}}
    if not args.no_deepspeed:
        variants["agentray before (DeepSpeed ZeRO-2)"] = {"engine": "deepspeed"}
    if args.block_mask:
        variants["agentray (torch engine, 4D mask)"] = {"attn_implementation": "sdpa"}
    names = ["LLaMA-Factory 0.9.5", *variants]
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for round_ in range(args.rounds):
        base = work / f"round{round_}"
        spec = {"pad_id": pad_id, "args": lf_args(model_dir, data_dir, base / "lf", args.steps)}
        runs[names[0]].append(lf_steps(lf_python, spec, work))
        for k, (name, overrides) in enumerate(variants.items()):
            out = base / f"agentray{k}" / "out"
            runs[name].append(agentray_steps(model_dir, train, out, args.steps, **overrides))
    report(runs)


if __name__ == "__main__":
    main()
