"""The Ray job entrypoint of every stage:

    ray job submit --working-dir . -- python -m jobs <stage> --config CONFIG [--run-dir DIR]

stages: instruct, collect, process, train, serve, eval, pipeline. It loads the config,
attaches to the job's cluster (RAY_ADDRESS, set by Ray for a job driver), runs the stage
and prints its result as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from types import ModuleType

from agentray.config import ConfigError, PipelineConfig, load_config

STAGES = ("instruct", "collect", "process", "train", "serve", "eval", "pipeline")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs")
    parser.add_argument("stage", choices=STAGES, help="the stage to run")
    parser.add_argument("--config", default=None, help="pipeline YAML (default: built-in defaults)")
    parser.add_argument("--run-dir", default=None, help="override run_dir")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, {"run_dir": args.run_dir} if args.run_dir else None)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    from agentray import pipeline
    from agentray.failures import StageFailed, failure_line
    from agentray.process import ProcessError
    from agentray.records import CorruptShardError

    stage = args.stage
    try:
        result = _run(pipeline, stage, cfg)
    except ProcessError as e:  # unusable inputs: one line, no traceback
        print(f"process: {e}", file=sys.stderr)
        return 1
    except CorruptShardError as e:
        print(
            f"{stage}: {e} (move it out of the folder and rerun: its episodes are redone)",
            file=sys.stderr,
        )
        return 1
    except StageFailed as e:  # a dead endpoint, most episodes or items failing: exit 1
        if e.result is not None:
            print(json.dumps(e.result, indent=2, default=str))
        line = failure_line(stage, e)
        print(f"\033[31m{line}\033[0m" if sys.stderr.isatty() else line, file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    if (line := pipeline.outputs_line(cfg, stage)) is not None:
        print(line, file=sys.stderr)
    return 0


def _run(pipeline: ModuleType, stage: str, cfg: PipelineConfig) -> dict:
    if stage == "pipeline":
        return pipeline.run_pipeline(cfg)
    if stage == "serve":
        return pipeline.stage_serve(cfg, block=True)
    return getattr(pipeline, f"stage_{stage}")(cfg)


if __name__ == "__main__":
    sys.exit(main())
