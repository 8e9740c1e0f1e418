"""``agentray lineage PATH``: the tree of stages behind a model or dataset folder, by
following each stage's manifest to the folders it read."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from agentray import storage

# how far above a folder its stage's manifest may be (train/model -> train)
_LEVELS_UP = 3


def stage_dir_of(location: str) -> str | None:
    """The folder holding the manifest of the stage that wrote ``location``."""
    here = storage.absolute(location).rstrip("/")
    for _ in range(_LEVELS_UP + 1):
        if storage.exists(storage.join(here, "manifest.json")):
            return here
        parent = here.rsplit("/", 1)[0]
        if not parent or parent == here or parent.endswith(":/"):
            return None
        here = parent
    return None


def lineage_lines(location: str) -> list[str]:
    """One line per stage (indented under what it was made from), then leaves: inputs
    without a manifest (a base model, a hub dataset). Raises FileNotFoundError where no
    manifest is found at or above ``location``."""
    start = stage_dir_of(location)
    if start is None:
        raise FileNotFoundError(
            f"no manifest.json at or up to {_LEVELS_UP} folders above {location}"
        )
    lines: list[str] = []
    _walk(start, 0, set(), lines)
    return lines


def _walk(stage_dir: str, depth: int, seen: set[str], lines: list[str]) -> None:
    pad = "  " * depth
    if stage_dir in seen:
        lines.append(f"{pad}└ (see above) {stage_dir}")
        return
    seen.add(stage_dir)
    manifest = storage.read_json(storage.join(stage_dir, "manifest.json"))
    lines.append(
        f"{pad}└ {manifest.get('stage')} [{manifest.get('status')}] {stage_dir}{_summary(manifest)}"
    )
    walked: set[str] = {stage_dir}
    for parent in _parents(manifest, stage_dir):
        parent_dir = stage_dir_of(parent)
        if parent_dir is None:
            lines.append(f"{pad}  └ input {parent}")
        elif parent_dir not in walked:
            walked.add(parent_dir)
            _walk(parent_dir, depth + 1, seen, lines)


def _parents(manifest: dict[str, Any], stage_dir: str) -> list[str]:
    """Folders and models the stage read: path-like strings in its inputs, and the model
    its policy played (a collect by an earlier round's model)."""
    found = list(_locations(manifest.get("inputs", {})))
    policy = (manifest.get("config") or {}).get("policy")
    if isinstance(policy, dict) and isinstance(policy.get("model"), str):
        found += list(_locations(policy["model"]))
    unique: list[str] = []
    for location in found:
        if location not in unique and not location.startswith(stage_dir + "/"):
            unique.append(location)
    return unique


def _locations(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if (value.startswith("/") or "://" in value) and storage.exists(value):
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _locations(item)
    elif isinstance(value, list):
        for item in value:
            yield from _locations(item)


def _summary(manifest: dict[str, Any]) -> str:
    counts = manifest.get("counts") or {}
    config = manifest.get("config") or {}
    stage = manifest.get("stage")
    code = (manifest.get("versions") or {}).get("code")
    if stage == "collect":
        policy = config.get("policy") or {}
        who = policy.get("model") or policy.get("backend")
        lineage = config.get("policy_lineage") or {}
        extra = f" of round {lineage['round']}" if "round" in lineage else ""
        text = f"policy {policy.get('backend')} {who}{extra}, {counts.get('episodes')} episodes"
    elif stage == "merge":
        text = f"kept {counts.get('kept')} of {counts.get('read')} ({counts.get('kept_by_source')})"
    elif stage == "train":
        text = f"steps {counts.get('steps', counts.get('planned_steps'))}, from {manifest['inputs'].get('model')}"
    elif stage == "process":
        text = f"eta {config.get('eta')}"
    else:
        text = ""
    return f"  ({text}; {code})" if text else f"  ({code})"
