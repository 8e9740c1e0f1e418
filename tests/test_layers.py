"""The package's layering is enforced, not described: the import-linter contracts in
pyproject.toml (layers from the contracts at the bottom to the CLI at the top; sibling
stages independent) must hold, so an import circle or an upward import fails CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--config", str(REPO / "pyproject.toml")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_module_over_500_lines():
    """Modules stay readable: a family, a stage or a backend that grows splits by concern."""
    too_long = {
        str(path.relative_to(REPO)): n
        for path in (REPO / "agentray").rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 500
    }
    assert not too_long, too_long
