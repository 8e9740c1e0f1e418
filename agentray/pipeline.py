"""Stage runners over a PipelineConfig, and the whole loop (``quickstart``)."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console

from agentray import storage
from agentray.config import PipelineConfig, validate_config
from agentray.policies.config import AnyPolicyConfig, OpenAIConfig

console = Console()

STAGES = ("collect", "process", "train", "serve", "eval")


def run_dir_of(cfg: PipelineConfig) -> str:
    """The run's location: an absolute local path (created) or an object store URI."""
    location = storage.absolute(cfg.run_dir)
    storage.makedirs(location)
    return location


def outputs_of(cfg: PipelineConfig, stage: str) -> str | None:
    """Where ``stage`` writes (absolute path or URI); None for serve, which writes no run
    artifacts."""
    if stage == "pipeline":
        return storage.absolute(cfg.run_dir)
    if stage == "collect" and cfg.collect.output:
        return storage.absolute(cfg.collect.output)
    return None if stage == "serve" else storage.join(storage.absolute(cfg.run_dir), stage)


def outputs_line(cfg: PipelineConfig, stage: str) -> str | None:
    """The line a stage command or job ends with: where its outputs are."""
    outputs = outputs_of(cfg, stage)
    return None if outputs is None else f"agentray {stage}: outputs in {outputs}"


def stage_instruct(cfg: PipelineConfig) -> dict[str, Any]:
    """Teacher-written tasks (not part of the offline loop: it needs a teacher endpoint)."""
    from agentray.instruct import run_instruct

    return run_instruct(cfg.instruct, run_dir_of(cfg), envs=cfg.envs)


def stage_collect(cfg: PipelineConfig) -> dict[str, Any]:
    from agentray.collect import run_collect

    return run_collect(cfg.collect, run_dir_of(cfg), envs=cfg.envs)


def stage_process(cfg: PipelineConfig) -> dict[str, Any]:
    from agentray.process import run_process

    return run_process(cfg.process, run_dir_of(cfg))


def stage_train(cfg: PipelineConfig) -> dict[str, Any]:
    from agentray.train import run_train

    return run_train(cfg.train, run_dir_of(cfg))


def serve_config_for_run(cfg: PipelineConfig):
    """The serve section, pointed at this run's trained model unless it names one."""
    serve = cfg.serve.model_copy(deep=True)
    trained = storage.join(run_dir_of(cfg), "train", "model")
    if "model" not in cfg.serve.model_fields_set and storage.exists(
        storage.join(trained, "config.json")
    ):
        serve.model = trained
    return serve


def stage_serve(cfg: PipelineConfig, block: bool = True) -> dict[str, Any]:
    from agentray.serve import run_serve

    return run_serve(serve_config_for_run(cfg), run_dir_of(cfg), block=block)


def stage_eval(cfg: PipelineConfig, resume: bool = False) -> dict[str, Any]:
    """``resume``: keep the run dir's finished eval work (the same model) instead of
    starting over; see ``run_eval``'s ``fresh``."""
    from agentray.eval import run_eval

    return run_eval(cfg.eval, run_dir_of(cfg), fresh=not resume, envs=cfg.envs)


def run_pipeline(cfg: PipelineConfig) -> dict[str, Any]:
    """collect -> process -> train -> serve the checkpoint -> evaluate it through the server."""
    from agentray.serve import start_server, stop_server

    timings: dict[str, float] = {}
    results: dict[str, Any] = {}
    for name, fn in (
        ("collect", stage_collect),
        ("process", stage_process),
        ("train", stage_train),
    ):
        results[name] = _timed(name, fn, cfg, timings)
    serve_cfg = serve_config_for_run(cfg)
    start = time.perf_counter()
    console.rule("[bold]serve")
    base_url = start_server(serve_cfg)
    timings["serve"] = time.perf_counter() - start
    console.print(f"serving {serve_cfg.model} at {base_url}")
    try:
        cfg.eval.policy = served_policy(
            cfg.eval.policy, base_url, serve_cfg.served_model_name, cfg.serve.api_key_env
        )
        results["eval"] = _timed("eval", stage_eval, cfg, timings)
    finally:
        stop_server(serve_cfg.app_name)
    results["timings_s"] = {k: round(v, 1) for k, v in timings.items()}
    return results


def served_policy(
    policy: AnyPolicyConfig, base_url: str, model: str, api_key_env: str | None = None
) -> OpenAIConfig:
    """``policy`` pointed at the served model: an openai config (of another backend's,
    only its ``params`` are kept, and the key is the one serve requires)."""
    if isinstance(policy, OpenAIConfig):
        return policy.model_copy(update={"base_url": base_url, "model": model})
    key = {"api_key_env": api_key_env} if api_key_env else {}
    return OpenAIConfig(model=model, base_url=base_url, params=policy.params, **key)


def _timed(name: str, fn, cfg: PipelineConfig, timings: dict[str, float]) -> Any:
    console.rule(f"[bold]{name}")
    start = time.perf_counter()
    result = fn(cfg)
    timings[name] = time.perf_counter() - start
    console.print(f"{name} done in {timings[name]:.1f}s")
    return result


def quickstart_config(run_dir: str, families: list[str] | None = None) -> PipelineConfig:
    """Small, offline defaults that run the whole loop in minutes on a laptop CPU."""
    data: dict[str, Any] = {
        "run_dir": run_dir,
        # one demonstration instead of three keeps Mind2Web inside the tiny model's window
        "envs": {"mind2web": {"n_shots": 1}},
        "collect": {"max_tasks_per_family": 4},
        "process": {
            "max_general_records": 400,
            "max_seq_len": 2048,
            "packing": {"enabled": True},
        },
        # one worker with both cores trains with the torch engine (no DeepSpeed start-up);
        # a from-scratch tiny model needs a high rate to show its loss falling in ~40 steps
        "train": {
            "num_workers": 1,
            "resources_per_worker": {"CPU": 2},
            "epochs": 2,
            "max_seq_len": 2048,
            "micro_batch_size": 2,
            "lr": 2e-3,
        },
        "eval": {
            "max_tasks_per_family": 4,
            "general": {"max_items": 5},
            "policy": {
                "backend": "openai",
                "model": "agentray",
                "base_url": "http://127.0.0.1:8000/v1",
                "params": {"max_new_tokens": 96, "temperature": 0.0},
            },
        },
    }
    if families:
        data["collect"]["families"] = families
        data["eval"]["families"] = families
    return validate_config(data, source="quickstart defaults")
