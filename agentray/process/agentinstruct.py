"""Trajectory rows -> AgentInstruct records, with a reason for every row set aside.

A kept row becomes ``{id, source: "agent", family, conversations}`` where
``conversations`` is the public AgentInstruct schema (``from``/``loss``/``value``; a
conversation may open with one ``system`` turn, its system prompt). A row that is not kept
carries ``reject_reason`` instead, so nothing leaves the pipeline without being counted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from agentray import storage
from agentray.process.config import ProcessConfig
from agentray.process.general import plain_record
from agentray.process.inputs import BadInput, read_records, record_files
from agentray.records import Trajectory

SPEAKERS = ("human", "gpt")


def as_list(value: Any) -> list:
    """Ray Data hands nested columns over as numpy arrays; the rest of the code wants lists."""
    if value is None:
        return []
    return list(value.tolist() if hasattr(value, "tolist") else value)


def conversation_problem(turns: list[dict[str, Any]]) -> str | None:
    """Why ``turns`` is not a trainable AgentInstruct conversation, or None if it is: human
    and gpt turns alternate from a human one, after at most one leading system turn."""
    first = 1 if turns and _speaker(turns[0]) == "system" else 0
    if len(turns) <= first:
        return "malformed: empty conversation"
    for i, turn in enumerate(turns):
        if i >= first and _speaker(turn) not in SPEAKERS:
            return f"malformed: turn {i} has speaker {_speaker(turn)!r} (expected human|gpt)"
        if not isinstance(turn.get("value"), str):
            return f"malformed: turn {i} has no text"
        expected = "system" if i < first else SPEAKERS[(i - first) % 2]
        if turn["from"] != expected:
            return (
                f"malformed: turn {i} is {turn['from']!r}, expected {expected!r} (turns alternate)"
            )
    if not any(t["from"] == "gpt" and t.get("loss") is not False for t in turns):
        return "malformed: no assistant turn to train on"
    return None


def _speaker(turn: Any) -> Any:
    return turn.get("from") if isinstance(turn, dict) else type(turn).__name__


def trajectory_reject_reason(record: Trajectory, cfg: ProcessConfig) -> str | None:
    status = record.status.value
    if status not in cfg.keep_statuses:
        return f"status {status}"
    if math.isnan(record.reward):
        return "malformed: no reward"
    threshold = cfg.threshold_for(record.task)
    if record.reward < threshold:
        return f"reward below {threshold:.3g}"
    return conversation_problem(list(record.conversations))


def _conversations(row: dict[str, Any]) -> list[dict[str, Any]]:
    turns = as_list(row.get("conversations"))
    return [dict(t) if isinstance(t, dict) else t for t in turns]


def classify_trajectory(row: Mapping[str, Any] | Trajectory, cfg: ProcessConfig) -> dict[str, Any]:
    """One output row per trajectory (a ``Trajectory`` or a parquet row of one): the
    AgentInstruct record, or the reason it was not kept (a row that is not a valid
    ``Trajectory`` is kept out as malformed).

    ``conversations`` travels as JSON text between stages of the Ray Data pipeline, so
    kept and rejected rows share one flat schema."""
    try:
        record = Trajectory.from_row(row)
    except ValidationError as e:
        assert isinstance(row, Mapping)
        family = str(row.get("task") or "unknown")
        return _classified(str(row.get("id")), family, [], _malformed(e), origin="collect")
    family, reason = family_of_record(record.task, cfg)
    reason = reason or trajectory_reject_reason(record, cfg)
    turns = [] if reason else _clean_turns(list(record.conversations))
    reason = reason or _turn_limit_problem(turns, cfg) or _action_format_problem(family, turns, cfg)
    return _classified(record.id, family, turns, reason, origin="collect", reward=record.reward)


def _malformed(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "row"
    return f"malformed: {where}: {first['msg']}"


def classify_agentinstruct(row: dict[str, Any], cfg: ProcessConfig) -> dict[str, Any]:
    """A record of the public AgentInstruct schema (already filtered by its authors): its
    family and conversation are checked. The family comes from a ``family`` field or the id
    prefix (``os_12`` -> ``os``), through ``process.family_aliases``."""
    record_id = str(row.get("id"))
    family, reason = family_of_record(str(row.get("family") or record_id.rsplit("_", 1)[0]), cfg)
    turns = _conversations(row)
    reason = reason or conversation_problem(turns)
    turns = [] if reason else _clean_turns(turns)
    reason = reason or _turn_limit_problem(turns, cfg) or _action_format_problem(family, turns, cfg)
    return _classified(record_id, family, turns, reason, origin="agentinstruct")


def classify_agentinstruct_line(row: dict[str, Any], cfg: ProcessConfig) -> dict[str, Any]:
    """``classify_agentinstruct`` of a row of ``load_agentinstruct`` (the record as JSON
    text, with the file and line it came from)."""
    out = classify_agentinstruct(json.loads(row["record"]), cfg)
    return out | {"file": row["file"], "line": int(row["line"])}


def family_of_record(family: str, cfg: ProcessConfig) -> tuple[str, str | None]:
    """(the family after ``process.family_aliases``, why it cannot be trained on or None).
    A family no env knows is never trained on under a name of its own."""
    from agentray.envs.registry import ENVS

    family = cfg.family_aliases.get(family, family)
    if family in ENVS:
        return family, None
    return family, f"unknown family {family!r} (no such env; map it with process.family_aliases)"


def _turn_limit_problem(turns: list[dict[str, Any]], cfg: ProcessConfig) -> str | None:
    agent_turns = sum(1 for t in turns if t["from"] == "gpt" and t["loss"])
    if cfg.max_turns is not None and agent_turns > cfg.max_turns:
        return f"more than {cfg.max_turns} agent turns"
    return None


def _action_format_problem(
    family: str, turns: list[dict[str, Any]], cfg: ProcessConfig
) -> str | None:
    """The first trained agent turn that does not parse in its family's action format."""
    from agentray.envs.registry import FAMILIES, env_class

    if not cfg.check_actions or family not in FAMILIES:
        return None
    check = env_class(family).action_problem
    for i, turn in enumerate(turns):
        if turn["from"] == "gpt" and turn["loss"]:
            problem = check(turn["value"])
            if problem:
                return f"invalid action format in turn {i}: {problem}"
    return None


def _classified(
    record_id: str,
    family: str,
    turns: list[dict],
    reason: str | None,
    origin: str,
    reward: float = math.nan,
) -> dict:
    """``reward`` is NaN where unknown (public records were filtered by their authors);
    ``file`` and ``line`` (0: none) say where a record read from a file came from."""
    return {
        "id": record_id,
        "source": "agent",
        "origin": origin,
        "family": family,
        "conversations": "" if reason else json.dumps(turns),
        "problem_key": _problem_key(turns) if not reason else "",
        "reward": reward,
        "turns": sum(1 for t in turns if t["from"] == "gpt" and t["loss"]),
        "reject_reason": reason or "",
        "file": "",
        "line": 0,
    }


def _problem_key(turns: list[dict[str, Any]]) -> str:
    """What identifies the task: the first human turn after the demonstration."""
    last_demo = max((i for i, t in enumerate(turns) if t["loss"] is False), default=-1)
    problem = next((t["value"] for t in turns[last_demo + 1 :] if t["from"] == "human"), "")
    return hashlib.sha1(" ".join(problem.split()).encode()).hexdigest()


def _clean_turns(turns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "from": t["from"],
            "loss": t.get("loss") is not False if t["from"] == "gpt" else None,
            "value": t["value"],
        }
        for t in turns
    ]


def drop_duplicates(rows: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """(kept, rejected): a row repeating an earlier row's task id (within its origin: our
    ``db_0`` and the public set's ``db_0`` are different tasks) or its problem text is set
    aside with the reason."""
    seen_ids: set[tuple[str, str]] = set()
    seen_problems: dict[str, str] = {}
    kept, rejected = [], []
    for row in sorted(rows, key=lambda r: (r["origin"], r["id"])):
        key = (row["origin"], row["id"])
        reason = None
        if key in seen_ids:
            reason = "duplicate task id"
        elif row["problem_key"] in seen_problems:
            reason = f"duplicate problem of {seen_problems[row['problem_key']]}"
        seen_ids.add(key)
        if reason:
            rejected.append({**row, "conversations": "", "reject_reason": reason})
        else:
            seen_problems[row["problem_key"]] = row["id"]
            kept.append(row)
    return kept, rejected


# ------------------------------------------------------------------ the public schema on disk


def load_agentinstruct(paths: list[str]) -> tuple[list[dict[str, Any]], list[BadInput]]:
    """The records of AgentInstruct-schema files (JSONL, JSON arrays, parquet; files or
    folders, paths or URIs) as rows ``{file, line, record}`` (the record as JSON text),
    and every line or file that could not be read."""
    rows: list[dict[str, Any]] = []
    bad: list[BadInput] = []
    stored = [p for p in paths if storage.is_uri(p) or storage.exists(p) or not _is_name(p)]
    for file in record_files(stored, "AgentInstruct data") if stored else []:
        for item in read_records(file):
            if isinstance(item, BadInput):
                bad.append(item)
            else:
                rows.append({"file": file, "line": item[0], "record": _as_json(item[1])})
    for name in (p for p in paths if p not in stored):
        for split, number, record in _dataset_records(name):
            rows.append({"file": f"{name}[{split}]", "line": number, "record": _as_json(record)})
    return rows, bad


def _is_name(path: str) -> bool:
    """A hub dataset name (``owner/name``, as the public ``THUDM/AgentInstruct``)."""
    owner, _, name = path.partition("/")
    return bool(owner and name) and "/" not in name and not path.startswith((".", "~"))


def _dataset_records(name: str) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """``(split, number from 1, record)`` of every split of the ``datasets`` dataset
    ``name`` (the public AgentInstruct has one split per family)."""
    import datasets

    try:
        splits = datasets.load_dataset(name)
    except Exception as e:  # noqa: BLE001 - offline, unknown or gated: one message
        offline = (
            " (HF_HUB_OFFLINE=1: only the local datasets cache is read)"
            if (os.environ.get("HF_HUB_OFFLINE") == "1")
            else ""
        )
        raise FileNotFoundError(
            f"AgentInstruct data {name!r} is no file or folder, and no datasets name that "
            f"loads{offline}: {type(e).__name__}: {str(e).splitlines()[0][:300]}"
        ) from None
    for split, dataset in splits.items():
        for number, record in enumerate(dataset, start=1):
            yield split, number, plain_record(record)


def _as_json(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=str)


def write_agentinstruct(rows: list[dict[str, Any]], location: str) -> dict[str, str]:
    """One JSONL file per family, as the public dataset has one split per family; the
    folder at ``location`` (a path or URI) is replaced as a whole."""
    by_family: dict[str, list[str]] = {}
    for row in rows:
        record = {"id": row["id"], "conversations": json.loads(row["conversations"])}
        by_family.setdefault(row["family"], []).append(_as_json(record) + "\n")
    with storage.staged_dir(location) as staged:
        for family, lines in sorted(by_family.items()):
            (staged / f"{family}.jsonl").write_text("".join(lines), encoding="utf-8")
    return {family: storage.join(location, f"{family}.jsonl") for family in sorted(by_family)}
