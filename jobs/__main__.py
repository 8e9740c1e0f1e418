"""The Ray job entrypoint of every stage:

    ray job submit --working-dir . -- python -m jobs <stage> --config CONFIG [--run-dir DIR]

stages: instruct, collect, process, train, serve, eval, pipeline. It loads the config,
attaches to the job's cluster (RAY_ADDRESS, set by Ray for a job driver), runs the stage
and prints its result as JSON."""

from __future__ import annotations

import argparse
import json
import sys

from agentray.config import ConfigError, load_config

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
    from agentray.process import ProcessError

    stage = args.stage
    try:
        if stage == "pipeline":
            result = pipeline.run_pipeline(cfg)
        elif stage == "serve":
            result = pipeline.stage_serve(cfg, block=True)
        else:
            result = getattr(pipeline, f"stage_{stage}")(cfg)
    except ProcessError as e:  # unusable inputs: one line, no traceback
        print(f"process: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    if (line := pipeline.outputs_line(cfg, stage)) is not None:
        print(line, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
