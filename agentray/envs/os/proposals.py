"""Teacher-written OS tasks (agentray instruct; see agentray/envs/proposals.py)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentray.envs import proposals as shared
from agentray.envs.os.config import OSConfig
from agentray.envs.os.env import OSEnv, episode_sandbox
from agentray.envs.sandbox import CommandResult, Sandbox, require_bwrap
from agentray.types import TaskSpec

# (agentray instruct: see agentray/envs/proposals.py for the contract)
PROPOSAL_GUIDE = """OS tasks: a question about, or a change to, files under /root (the home and \
working directory) that an agent solves with bash commands in a Linux sandbox without network.
A task is a JSON object with these fields:
- "description": the question or instruction, naming the paths it is about (under /root)
- "files": {"path": "content", ...}: the text files the task starts with, paths relative to \
/root (e.g. "logs_12/app.log")
- "setup": optional bash run in /root after the files are written, before the agent starts; \
it may only leave non-executable text files
- "thought": one sentence on how to solve it
- "solution": bash that solves it; for a question it prints exactly the answer
- "check": for a question, {"answer": "..."}: the exact answer, one line; for a change, \
{"script": "..."}: bash that exits 0 once the change is made, and not before"""


MAX_PROPOSAL_FILES = 60


MAX_PROPOSAL_BYTES = 256 * 1024  # all files together


_PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")


def instruction_of(payload: dict[str, Any]) -> str:
    """The text near-duplicates are measured on: the description."""
    return payload["description"]


def proposal_from_task(task: TaskSpec) -> dict[str, Any]:
    """An OS task written in the proposal format (a seed example for the teacher)."""
    p = task.payload
    evaluation = p["evaluation"]
    check = (
        {"answer": evaluation["match"]}
        if "match" in evaluation
        else {"script": evaluation["check"]}
    )
    return {
        "description": p["description"],
        "files": p["files"],
        "thought": p["think"],
        "solution": p["command"],
        "check": check,
    }


def task_from_proposal(
    proposal: Any, task_id: str, config: OSConfig | None = None
) -> TaskSpec | shared.Rejected:
    """The proposal as a train task, verified in the real bubblewrap sandbox.

    The files must be safe relative paths; a setup script must succeed and leave only
    plain text files (they become the task's files, so every episode starts from them).
    On a fresh copy of the files the solution must exit 0 within the command time limit,
    and then: for a question, print exactly the check's answer; for a change, make the
    check script exit 0, while the check run on an untouched copy must fail (a check that
    passes before anything is done verifies nothing). Finally the expert replays the task
    in ``OSEnv`` and must win. Raises ``SandboxUnavailable`` when bwrap cannot run here."""
    config = config or OSConfig()
    require_bwrap()
    try:
        payload = _proposal_payload(shared.require_object(proposal), config)
        task = TaskSpec(id=task_id, family=OSEnv.name, split="train", seed=0, payload=payload)
        if "match" in payload["evaluation"]:
            _verify_answer(payload, config)
        else:
            _verify_script(payload, config)
        shared.check_replay(OSEnv(config), task)
    except shared.ProposalError as e:
        return e.rejected
    return task


def _proposal_payload(proposal: dict[str, Any], config: OSConfig) -> dict[str, Any]:
    description = shared.require_text(proposal, "description", 2000)
    files = _proposal_files(shared.require(proposal, "files", dict))
    if proposal.get("setup") not in (None, ""):
        files = _files_after_setup(files, shared.require_text(proposal, "setup", 4000), config)
    command = shared.require_text(proposal, "solution", 4000)
    check = shared.require(proposal, "check", dict)
    if ("answer" in check) == ("script" in check):
        raise shared.ProposalError(
            shared.BAD_FIELD, "the check needs exactly one of 'answer' and 'script'"
        )
    if "answer" in check:
        answer = shared.require(check, "answer", (str, int, float))
        answer = str(answer).strip()
        if not answer or "\n" in answer:
            raise shared.ProposalError(
                shared.BAD_FIELD, "the check's 'answer' must be one non-empty line"
            )
        evaluation = {"match": answer}
    else:
        evaluation = {"check": shared.require_text(check, "script", 4000)}
    return {
        "kind": "generated",
        "description": description,
        "files": files,
        "evaluation": evaluation,
        "command": command,
        "think": shared.optional_text(proposal, "thought", "I can do this with one bash command."),
    }


def _proposal_files(files: dict[str, Any]) -> dict[str, str]:
    if len(files) > MAX_PROPOSAL_FILES:
        raise shared.ProposalError(shared.BAD_FIELD, f"more than {MAX_PROPOSAL_FILES} files")
    for path, content in files.items():
        parts = path.split("/")
        if not all(_PATH_PART.fullmatch(part) for part in parts) or len(parts) > 8:
            raise shared.ProposalError(
                shared.BAD_FIELD, f"file path {path!r} is not a plain relative path under /root"
            )
        if not isinstance(content, str):
            raise shared.ProposalError(shared.BAD_FIELD, f"the content of {path!r} is not a string")
    _check_size(files)
    _check_no_file_under_file(files)
    return dict(files)


def _check_size(files: dict[str, str]) -> None:
    if sum(len(content.encode()) for content in files.values()) > MAX_PROPOSAL_BYTES:
        raise shared.ProposalError(
            shared.BAD_FIELD, f"the files hold more than {MAX_PROPOSAL_BYTES} bytes"
        )


def _check_no_file_under_file(files: dict[str, str]) -> None:
    for path in files:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise shared.ProposalError(
                    shared.BAD_FIELD, f"{path!r} lies under the file {parts[:i]!r}"
                )


@contextlib.contextmanager
def _fresh_sandbox(files: dict[str, str], config: OSConfig) -> Iterator[Sandbox]:
    """A sandbox over a fresh scratch copy of ``files``, set up as ``OSEnv.reset`` does."""
    scratch, box = episode_sandbox(config, files)
    try:
        yield box
    finally:
        scratch.release()


def _files_after_setup(files: dict[str, str], setup: str, config: OSConfig) -> dict[str, str]:
    with _fresh_sandbox(files, config) as box:
        _require_success(box.run(setup), "setup", shared.SETUP_ERROR, config)
        return _snapshot(box.root)


def _snapshot(root: Path) -> dict[str, str]:
    """The plain text files under ``root``; anything the task format cannot keep (links,
    executables, empty directories, binary content) is the setup's error."""
    files: dict[str, str] = {}
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        if not dirs and not names and here != root:
            raise shared.ProposalError(
                shared.SETUP_ERROR, f"the setup leaves the empty directory {here.name}"
            )
        for name in [*dirs, *names]:
            path = here / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise shared.ProposalError(
                    shared.SETUP_ERROR, f"the setup leaves {relative}, not a plain file"
                )
            if path.is_file():
                if path.stat().st_mode & 0o111:
                    raise shared.ProposalError(
                        shared.SETUP_ERROR,
                        f"the setup leaves {relative} executable (tasks keep 644)",
                    )
                try:
                    files[relative] = path.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    raise shared.ProposalError(
                        shared.SETUP_ERROR, f"{relative} is not UTF-8 text"
                    ) from None
    if len(files) > MAX_PROPOSAL_FILES:
        raise shared.ProposalError(
            shared.SETUP_ERROR, f"the setup leaves more than {MAX_PROPOSAL_FILES} files"
        )
    _check_size(files)
    return dict(sorted(files.items()))


def _require_success(result: CommandResult, what: str, code: str, config: OSConfig) -> None:
    if result.timed_out:
        raise shared.ProposalError(
            code, f"the {what} runs longer than {config.command_timeout_s:g} s"
        )
    if result.exit_code != 0:
        raise shared.ProposalError(
            code, f"the {what} exits {result.exit_code}: {result.output.strip()[-300:]!r}"
        )


def _verify_answer(payload: dict[str, Any], config: OSConfig) -> None:
    expected = payload["evaluation"]["match"]
    with _fresh_sandbox(payload["files"], config) as box:
        result = box.run(payload["command"])
    _require_success(result, "solution", shared.SOLUTION_ERROR, config)
    printed = result.output.strip()
    if printed != expected:
        raise shared.ProposalError(
            shared.CHECK_FAILED,
            f"the solution prints {printed[:200]!r}, the check expects {expected!r}",
        )


def _verify_script(payload: dict[str, Any], config: OSConfig) -> None:
    check = payload["evaluation"]["check"]
    args = [str(None)]  # what the env passes after `Act: finish`
    with _fresh_sandbox(payload["files"], config) as box:
        untouched = box.run(check, args)
    if untouched.exit_code == 0 and not untouched.timed_out:
        raise shared.ProposalError(
            shared.CHECK_PASSES_WITHOUT_SOLUTION, "the check passes on the untouched files already"
        )
    with _fresh_sandbox(payload["files"], config) as box:
        _require_success(box.run(payload["command"]), "solution", shared.SOLUTION_ERROR, config)
        after = box.run(check, args)
    if after.timed_out:
        raise shared.ProposalError(
            shared.CHECK_ERROR, f"the check runs longer than {config.command_timeout_s:g} s"
        )
    if after.exit_code != 0:
        raise shared.ProposalError(
            shared.CHECK_FAILED,
            f"after the solution the check exits {after.exit_code}: {after.output.strip()[-300:]!r}",
        )
