"""Rewrite the README's config reference from the pydantic models: python scripts/update_readme.py"""

from __future__ import annotations

import re
from pathlib import Path

from agentray.config import config_reference

START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"
README = Path(__file__).resolve().parents[1] / "README.md"


def render(text: str) -> str:
    block = f"{START}\n\n{config_reference()}\n{END}"
    return re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S)


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
