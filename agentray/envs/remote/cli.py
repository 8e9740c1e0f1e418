"""``agentray env serve``: attach with ``register_serve(env_app)`` to the ``env`` group."""

from __future__ import annotations

import json
from typing import Any

import typer

from agentray.envs.registry import ENVS, register_family
from agentray.registry import is_import_path


def serve_command(
    family: str = typer.Argument(
        ..., help="a registered family (db, os, kg, ...) or package.module:Class"
    ),
    port: int = typer.Option(8000, "--port", "-p", help="port to listen on (0: any free one)"),
    protocol: str = typer.Option("agentgym", "--protocol", help="agentgym | agentbench | openenv"),
    host: str = typer.Option("127.0.0.1", "--host", help="interface to bind (0.0.0.0: all)"),
    family_config: str = typer.Option(
        "{}", "--family-config", help="the family's settings as JSON (its envs: section)"
    ),
) -> None:
    """Serve a registered env family over HTTP (AgentGym, AgentBench task-worker or OpenEnv API)."""
    from agentray.envs.remote.serve import PROTOCOLS, serve

    if protocol not in PROTOCOLS:
        raise typer.BadParameter(f"--protocol must be one of {', '.join(PROTOCOLS)}")
    if is_import_path(family):  # a plug-in of the user's own, by module:Class
        try:
            family = register_family(family)
        except ValueError as e:
            raise typer.BadParameter(str(e)) from None
    if family not in ENVS:
        raise typer.BadParameter(f"unknown family {family!r}; known: {', '.join(ENVS.names())}")
    try:
        settings: dict[str, Any] = json.loads(family_config)
    except json.JSONDecodeError as e:
        raise typer.BadParameter(f"--family-config is not JSON: {e}") from None
    serve(family, protocol, port, host, settings)


def register_serve(env_app: typer.Typer) -> None:
    """Add ``serve`` to the ``agentray env`` command group."""
    env_app.command("serve")(serve_command)
