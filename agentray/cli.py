"""The ``agentray`` command."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import typer

from agentray import storage
from agentray.config import (
    ConfigDeprecationWarning,
    ConfigError,
    PipelineConfig,
    dump_config,
    load_config,
)
from agentray.envs.remote.cli import register_serve

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="AgentTuning on Ray: collect, process, train, serve, eval.",
)


@app.callback()
def main(
    address: str | None = typer.Option(
        None,
        "--address",
        envvar="RAY_ADDRESS",
        help="run on this Ray cluster (e.g. auto, or ray://head:10001) instead of starting one",
    ),
) -> None:
    """AgentTuning on Ray: collect, process, train, serve, eval."""
    if address:
        os.environ["RAY_ADDRESS"] = address


ConfigArg = typer.Argument(..., exists=True, dir_okay=False, help="pipeline YAML config")
RunDirOpt = typer.Option(None, "--run-dir", help="override run_dir of the config")


def _load(config: Path | None, run_dir: str | None) -> PipelineConfig:
    return _load_with(config, {"run_dir": run_dir} if run_dir else None)


def _load_with(config: Path | None, overrides: dict | None) -> PipelineConfig:
    """The config, or exit 2 naming every bad field; deprecated keys print a warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConfigDeprecationWarning)
        try:
            cfg = load_config(config, overrides=overrides)
        except ConfigError as e:
            cfg = None
            error = str(e)
    for warning in caught:
        if issubclass(warning.category, ConfigDeprecationWarning):
            typer.secho(f"warning: {warning.message}", fg=typer.colors.YELLOW, err=True)
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    if cfg is None:
        typer.secho(error, fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2)
    return cfg


def _show(result: dict, cfg: PipelineConfig | None = None, stage: str | None = None) -> None:
    """The stage's result as JSON on stdout; where its outputs are, on stderr."""
    typer.echo(json.dumps(result, indent=2, default=str))
    if cfg is not None and stage is not None:
        from agentray.pipeline import outputs_line

        if (line := outputs_line(cfg, stage)) is not None:
            typer.secho(line, err=True, fg="green")


def _run_stage(stage: str, run, cfg: PipelineConfig | None = None) -> dict:
    """``run()``'s result; a stage that fails loudly (``StageFailed``: a dead endpoint, most
    episodes or items failing) prints its result (if it got one) and one red line, exit 1."""
    from agentray.failures import StageFailed, failure_line
    from agentray.process import ProcessError
    from agentray.records import CorruptShardError

    try:
        return run()
    except ProcessError as e:  # unusable inputs to process: one line, no traceback
        typer.secho(f"process: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None
    except CorruptShardError as e:
        message = f"{stage}: {e} (move it out of the folder and rerun: its episodes are redone)"
        typer.secho(message, fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None
    except StageFailed as e:
        if e.result is not None:
            typer.echo(json.dumps(e.result, indent=2, default=str))
        typer.secho(failure_line(stage, e), fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None


@app.command()
def quickstart(
    run_dir: str = typer.Option("runs/quickstart", help="where every stage writes"),
    families: str | None = typer.Option(None, help="comma-separated env families (default: all)"),
) -> None:
    """The whole loop offline: expert teacher -> mix -> train tiny model -> serve -> evaluate."""
    from agentray.pipeline import quickstart_config
    from agentray.quickstart import run_quickstart

    try:
        cfg = quickstart_config(run_dir, families.split(",") if families else None)
    except ConfigError as e:
        typer.secho(str(e), fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    result = _run_stage("quickstart", lambda: run_quickstart(cfg))
    report = storage.join(storage.absolute(cfg.run_dir), "eval", "report.md")
    typer.echo(json.dumps(result["timings_s"]))
    typer.secho(f"\nSide by side: {result['side_by_side']}", fg=typer.colors.GREEN, bold=True)
    typer.secho(f"Report: {report}", fg=typer.colors.GREEN, bold=True)


@app.command()
def pipeline(config: Path = ConfigArg, run_dir: str | None = RunDirOpt) -> None:
    """All stages from one config."""
    from agentray.pipeline import run_pipeline

    cfg = _load(config, run_dir)
    _show(_run_stage("pipeline", lambda: run_pipeline(cfg)), cfg, "pipeline")


@app.command()
def iterate(
    config: Path = ConfigArg,
    rounds: int = typer.Option(
        2, "--rounds", min=1, help="rounds 0 .. N-1 (round 0: the pipeline)"
    ),
    run_dir: str | None = RunDirOpt,
    report_only: bool = typer.Option(
        False, "--report-only", help="only re-render <run_dir>/rounds.md from the rounds there"
    ),
) -> None:
    """Self-improvement rounds: round 0 is the pipeline; round k explores the train tasks with
    round k-1's model, keeps its successes, trains and evaluates again (resumable: finished
    stages are skipped). Ends with the report across rounds, <run_dir>/rounds.md."""
    from agentray.iterate import run_iterate, write_rounds_report

    cfg = _load(config, run_dir)
    if report_only:
        try:
            typer.echo(json.dumps(write_rounds_report(cfg.run_dir), indent=2))
        except FileNotFoundError as e:
            typer.secho(f"iterate --report-only: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2) from None
        return
    _show(_run_stage("iterate", lambda: run_iterate(cfg, rounds)), cfg, "pipeline")


@app.command()
def lineage(
    path: str = typer.Argument(..., help="a model, dataset or stage folder (path or URI)"),
) -> None:
    """The tree of stages behind a folder, following each manifest to what it read."""
    from agentray.iterate import lineage_lines

    try:
        lines = lineage_lines(path)
    except FileNotFoundError as e:
        typer.secho(f"lineage: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    typer.echo("\n".join(lines))


@app.command()
def instruct(
    config: Path | None = typer.Argument(
        None, exists=True, dir_okay=False, help="pipeline YAML config (its instruct section)"
    ),
    run_dir: str | None = RunDirOpt,
    base_url: str | None = typer.Option(
        None, "--base-url", help="teacher endpoint (sets instruct.teacher.base_url)"
    ),
    model: str | None = typer.Option(
        None, "--model", help="teacher model (sets instruct.teacher.model)"
    ),
) -> None:
    """Teacher-written DB / OS tasks (self-instruct, task derivation), each verified in the
    real env -> task files that collect reads through envs.<family>.task_files."""
    from agentray.instruct import InstructError, run_instruct
    from agentray.pipeline import run_dir_of

    given = {
        "run_dir": run_dir,
        "instruct.teacher.base_url": base_url,
        "instruct.teacher.model": model,
    }
    cfg = _load_with(config, {k: v for k, v in given.items() if v})
    try:
        result = _run_stage(
            "instruct", lambda: run_instruct(cfg.instruct, run_dir_of(cfg), envs=cfg.envs)
        )
        _show(result, cfg, "instruct")
    except InstructError as e:
        typer.secho(f"instruct: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None


@app.command()
def collect(config: Path = ConfigArg, run_dir: str | None = RunDirOpt) -> None:
    """Env families x teacher policy -> trajectory parquet (resumable; a rerun retries
    task_error episodes, see collect.rollout.retry_errors)."""
    from agentray.pipeline import stage_collect

    cfg = _load(config, run_dir)
    _show(_run_stage("collect", lambda: stage_collect(cfg)), cfg, "collect")


@app.command()
def process(
    config: Path = ConfigArg,
    run_dir: str | None = RunDirOpt,
    as_json: bool = typer.Option(
        False, "--json", help="print the full counts as JSON on stdout instead of the table"
    ),
) -> None:
    """Filter -> AgentInstruct records -> mix with general data -> tokenized shards; a
    progress bar, then a summary table (every count: process/manifest.json)."""
    from agentray.pipeline import stage_process

    cfg = _load(config, run_dir)
    result = _run_stage("process", lambda: stage_process(cfg))
    if as_json:
        _show(result, cfg, "process")
        return
    from agentray.pipeline import outputs_line

    typer.secho(outputs_line(cfg, "process"), err=True, fg="green")


@app.command()
def train(config: Path = ConfigArg, run_dir: str | None = RunDirOpt) -> None:
    """Ray Train + DeepSpeed fine-tuning -> HF checkpoint."""
    from agentray.pipeline import stage_train

    cfg = _load(config, run_dir)
    _show(stage_train(cfg), cfg, "train")


@app.command()
def serve(
    config: Path = ConfigArg,
    run_dir: str | None = RunDirOpt,
    block: bool = typer.Option(True, help="keep serving until Ctrl-C"),
) -> None:
    """Ray Serve, OpenAI-compatible /v1/chat/completions."""
    from agentray.pipeline import stage_serve
    from agentray.serve import ServeAddressError

    try:
        _show(stage_serve(_load(config, run_dir), block=block))
    except ServeAddressError as e:
        typer.secho(f"serve: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None


@app.command("eval")
def evaluate(
    config: Path | None = typer.Argument(
        None, exists=True, dir_okay=False, help="pipeline YAML config (its eval section)"
    ),
    run_dir: str | None = RunDirOpt,
    compare: tuple[str, str] | None = typer.Option(
        None,
        "--compare",
        help="two evaluated runs (run dirs, eval dirs or scores.json files; paths or URIs such "
        "as s3://bucket/run), e.g. base and tuned: a side-by-side report instead of a new "
        "evaluation",
    ),
    out: str | None = typer.Option(
        None, "--out", help="--compare: output folder or URI (default RUN_B/eval/compare)"
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="keep this run's finished episodes and items (the same model) and run the rest, "
        "and again the episodes that ended in task_error (eval.rollout.retry_errors); "
        "default: start over",
    ),
) -> None:
    """Held-in / held-out env tasks and general suites against a served model -> scores.json
    (Overall per category), report.md, report.html; or --compare RUN_A RUN_B."""
    if compare:
        from agentray.eval import CompareError, compare_runs

        try:
            paths = compare_runs(compare[0], compare[1], out)
        except CompareError as e:
            typer.secho(f"compare: {e}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=2) from None
        _show(paths)
        return
    if config is None:
        typer.secho("eval: give a CONFIG, or --compare RUN_A RUN_B", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2)
    from agentray.eval import ReferenceError
    from agentray.pipeline import stage_eval

    try:
        cfg = _load(config, run_dir)
        _show(_run_stage("eval", lambda: stage_eval(cfg, resume=resume)), cfg, "eval")
    except ReferenceError as e:
        typer.secho(f"eval: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None


@app.command("init-model")
def init_model(out: Path = typer.Option(..., help="output folder (HF format)")) -> None:
    """Build the offline default: a tiny Llama and a locally trained BPE tokenizer."""
    from agentray.model.tiny import build_tiny_model

    typer.echo(str(build_tiny_model(out)))


@app.command("config-reference")
def config_reference_cmd() -> None:
    """Print every config field as markdown tables (the README's reference)."""
    from agentray.config import config_reference

    typer.echo(config_reference(), nl=False)


@app.command("show-config")
def show_config(config: Path | None = typer.Argument(None)) -> None:
    """Print the fully-resolved config (defaults filled in)."""
    typer.echo(dump_config(_load(config, None)))


env_app = typer.Typer(
    no_args_is_help=True, help="Env families: list them, check a plug-in, serve one over HTTP."
)
app.add_typer(env_app, name="env")
register_serve(env_app)


@env_app.command("list")
def env_list() -> None:
    """Every known env family and where it comes from (agentray, an installed plug-in)."""
    from agentray.envs.registry import ENVS, FAMILIES, HELD_OUT_FAMILIES

    for name in ENVS.names():
        source = (
            "agentray (held-in default)"
            if name in FAMILIES
            else "agentray (held-out)"
            if name in HELD_OUT_FAMILIES
            else "plug-in"
        )
        try:
            reason = ENVS.get(name).unavailable()
        except KeyError as e:
            reason = e.args[0]
        note = f"  (not here: {reason})" if reason else ""
        typer.echo(f"{name:14} {ENVS.target(name):48} {source}{note}")


@env_app.command("check")
def env_check(
    family: str = typer.Argument(..., help="a family name, or 'package.module:Class'"),
    config: Path | None = typer.Option(
        None, "--config", exists=True, dir_okay=False, help="pipeline YAML: its envs.<family>"
    ),
    tasks: int = typer.Option(3, min=1, help="tasks of each split played"),
) -> None:
    """Run the Env contract's checks on a family and say what is wrong, in words (exit 1)."""
    from agentray.envs.registry import register_family
    from agentray.registry import is_import_path
    from agentray.testing.env_check import check_env

    try:
        name = register_family(family) if is_import_path(family) else family
        settings = None
        if config is not None:
            cfg = _load(config, None)
            settings = getattr(cfg.envs, name, None)
        report = check_env(name, settings, tasks)
    except (KeyError, ValueError) as e:
        typer.secho(f"env check: {e.args[0] if e.args else e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    for check in report.checks:
        mark = typer.style("ok  ", fg="green") if check.ok else typer.style("FAIL", fg="red")
        typer.echo(f"{mark} {check.name}: {check.detail}")
    if not report.ok:
        typer.secho(
            f"{report.family}: {len(report.problems())} of {len(report.checks)} checks failed",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(code=1)
    typer.secho(f"{report.family}: all {len(report.checks)} checks pass", fg="green", err=True)


if __name__ == "__main__":
    app()
