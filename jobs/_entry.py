"""Shared entrypoint: load the config, attach to the cluster (RAY_ADDRESS), run one stage."""

from __future__ import annotations

import argparse
import json
import sys

from agentray.config import ConfigError, load_config


def main(stage: str, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m jobs.{stage}")
    parser.add_argument("--config", default=None, help="pipeline YAML (default: built-in defaults)")
    parser.add_argument("--run-dir", default=None, help="override run_dir")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, {"run_dir": args.run_dir} if args.run_dir else None)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    from agentray import pipeline

    if stage == "pipeline":
        result = pipeline.run_pipeline(cfg)
    elif stage == "serve":
        result = pipeline.stage_serve(cfg, block=True)
    else:
        result = getattr(pipeline, f"stage_{stage}")(cfg)
    print(json.dumps(result, indent=2, default=str))
    return 0
