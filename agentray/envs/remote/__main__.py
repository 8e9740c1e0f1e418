"""``python -m agentray.envs.remote serve FAMILY ...``: ``agentray env serve`` without the
rest of the CLI (what tests and benchmarks start as a child process)."""

import typer

from agentray.envs.remote.cli import register_serve

app = typer.Typer(add_completion=False)
register_serve(app)


@app.callback()
def _group() -> None:
    """agentray env commands."""


if __name__ == "__main__":
    app()
