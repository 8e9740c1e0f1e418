"""The OS family in AgentBench's OS-interaction format, each episode in a bubblewrap sandbox.

The agent answers ``Think: ...`` then one of ``Act: bash`` (+ a ```bash block, run in the
sandbox), ``Act: answer(...)`` (compared with the expected answer) or ``Act: finish`` (the
task's check script, run in the same sandbox, decides). Tasks are generated from a seed: the
files each one needs are materialised in a per-episode scratch directory at reset, which the
sandbox binds as ``/root``, its home and working directory.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from agentray.envs.base import (
    Env,
    FamilyConfig,
    Redraw,
    file_tasks,
    generate_split_tasks,
    no_episode_result,
    split_tasks,
    task_files_field,
)
from agentray.envs.proposals import (
    BAD_FIELD,
    CHECK_ERROR,
    CHECK_FAILED,
    CHECK_PASSES_WITHOUT_SOLUTION,
    SETUP_ERROR,
    SOLUTION_ERROR,
    ProposalError,
    Rejected,
    check_replay,
    optional_text,
    require,
    require_object,
    require_text,
)
from agentray.envs.sandbox import CommandResult, Sandbox, SandboxUnavailable, require_bwrap
from agentray.types import Message, Status, StepResult, TaskSpec

# AgentBench's OS-interaction prompt (src/server/tasks/os_interaction/task.py), verbatim.
INSTRUCTION = """You are an assistant that will act like a person, I'will play the role of linux(ubuntu) operating system. Your goal is to implement the operations required by me or answer to the question proposed by me. For each of your turn, you should first think what you should do, and then take exact one of the three actions: "bash", "finish" or "answer". 

1. If you think you should execute some bash code, take bash action, and you should print like this:

Think: put your thought here.

Act: bash

```bash
# put your bash code here
```

2. If you think you have finished the task, take finish action, and you should print like this:

Think: put your thought here.

Act: finish

3. If you think you have got the answer to the question, take answer action, and you should print like this:

Think: put your thought here.

Act: answer(Your answer to the question should be put in this pair of parentheses)

If the output is too long, I will truncate it. The truncated output is not complete. You have to deal with the truncating problem by yourself. Attention, your bash code should not contain any input operation. Once again, you should take only exact one of the three actions in each turn.

"""  # (the trailing space after "answer". is AgentBench's too)

ONE_SHOT_QUESTION = 'tell me how many files are in the directory "/etc"?'
ONE_SHOT: list[Message] = [
    {
        "role": "assistant",
        "content": "Think: To count the files in /etc, I need to print all the files in it.\n\n"
        "Act: bash\n\n```bash\nls /etc\n```",
        "loss": False,
    },
    {
        "role": "user",
        "content": "The output of the OS:\ncpi cron.hourly fuse.conf iproute2 lvm "
        "networkd-dispatcher protocols selinux tmpfiles.d [truncated because the output is too long]",
    },
    {
        "role": "assistant",
        "content": "Think: The output has been truncated because it is too long, so I need to "
        "count files by script directly.\n\nAct: bash\n\n```bash\nls -1 /etc | wc -l\n```",
        "loss": False,
    },
    {"role": "user", "content": "The output of the OS:\n220"},
    {
        "role": "assistant",
        "content": "Think: Now I get the answer, it is 220.\n\nAct: answer(220)",
        "loss": False,
    },
]
NEW_PROBLEM = "Now, I will start a new problem in a new OS. My problem is:\n\n"
TRUNCATION_NOTE = "\n[truncated because the output is too long]"


class OSConfig(FamilyConfig):
    max_rounds: int = 8
    command_timeout_s: float = 5.0
    max_output_chars: int = 800
    workdir: str = "/root"  # where the scratch dir appears inside the sandbox
    scratch_dir: str | None = None  # host parent of the per-episode dirs (None: system temp)
    max_file_mb: int = 64
    max_memory_mb: int = 2048
    task_files: list[str] = task_files_field()


# --------------------------------------------------------------------------- parsing


def parse_action(text: str) -> tuple[str, str | None] | None:
    """AgentBench's ``extract_action``: the last ``Act:`` line decides.

    Returns ``("bash", script)``, ``("answer", text)``, ``("finish", None)`` or None when the
    reply has no usable action (including ``Act: bash`` without a ```bash block).
    """
    for act in reversed(re.findall(r"Act:\s*(.+)", text)):
        lowered = act.lower()
        if lowered.startswith("bash"):
            blocks = re.findall(r"```bash\n(.*?)\n```", text, re.DOTALL)
            script = "\n\n".join(blocks)
            return ("bash", script) if script.strip() else None
        if lowered.startswith("finish"):
            return "finish", None
        if lowered.startswith("answer"):
            content = act[6:].strip()
            left, right = content.find("("), content.rfind(")")
            if left == -1 or right == -1:
                continue
            return "answer", content[left + 1 : right]
    return None


def format_output(output: str, max_chars: int, timed_out: bool, timeout_s: float) -> str:
    """The observation AgentBench shows for a command's output."""
    if len(output) > max_chars:
        output = output[: max_chars - 20] + TRUNCATION_NOTE
    if timed_out:
        note = f"[the command was killed after {timeout_s:g} seconds]"
        output = f"{output}\n{note}" if output else note
    return f"The output of the OS:\n\n{output}" if output else "The output of the OS is empty."


# --------------------------------------------------------------------------- task generation


@dataclass
class Draft:
    description: str
    files: dict[str, str]  # path relative to the workdir -> content
    command: str  # the expert's bash command
    think: str  # the expert's thought before running it
    answer: str | None = None  # match-checked tasks
    check: str | None = None  # check-script tasks: exit 0 means success ($1 is the answer)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_DIRS = _words(
    "project data backup reports archive logs photos invoices build research notes "
    "assets exports configs drafts music release staging uploads vault"
)
_STEMS = _words(
    "alpha bravo delta echo fox gamma harbor iris juniper kilo lima maple nova orbit pine "
    "quartz raven sierra tango umber violet willow yarrow zephyr amber cobalt"
)
_USERS = _words("alice bob carol dave erin frank grace heidi ivan judy mallory oscar")
_MONTHS = _words("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec")
_MESSAGES = (
    "user session opened",
    "cache refreshed in {n} ms",
    "request to /api/items took {n} ms",
    "connection pool size is {n}",
    "disk usage at {n} percent",
    "retrying job {n}",
    "scheduled backup finished",
    "config reloaded",
    "worker {n} started",
    "queue length is {n}",
)
_LEVELS = ("INFO", "WARN", "ERROR", "DEBUG")


def _dir(rng: random.Random) -> str:
    return f"{rng.choice(_DIRS)}_{rng.randint(10, 99)}"


def _names(rng: random.Random, n: int, ext: str | None = None, prefix: str = "") -> list[str]:
    stems = rng.sample(_STEMS, n)
    return [
        f"{prefix}{s}{rng.randint(1, 9)}.{ext or rng.choice(('txt', 'log', 'csv'))}" for s in stems
    ]


def _line(rng: random.Random) -> str:
    return " ".join(rng.sample(_STEMS, rng.randint(2, 5)))


def _t_count_ext(rng: random.Random) -> Draft:
    d = _dir(rng)
    exts = ("log", "txt", "csv", "py", "md", "json")
    subdirs = ["", *rng.sample(("src", "docs", "tmp", "old", "misc", "lib"), rng.randint(1, 3))]
    files = {}
    for name in _names(rng, rng.randint(8, 20), "x"):
        sub = rng.choice(subdirs)
        path = f"{d}/{sub}/{name}" if sub else f"{d}/{name}"
        files[path.rsplit(".", 1)[0] + "." + rng.choice(exts)] = _line(rng) + "\n"
    ext = rng.choice(sorted({p.rsplit(".", 1)[1] for p in files}))
    count = sum(p.endswith(f".{ext}") for p in files)
    return Draft(
        f"How many files with the extension .{ext} are there in the directory /root/{d}, "
        "including its subdirectories?",
        files,
        f"find /root/{d} -type f -name '*.{ext}' | wc -l",
        f"I need to find all the .{ext} files under /root/{d} recursively and count them.",
        answer=str(count),
    )


def _t_largest(rng: random.Random) -> Draft:
    d = _dir(rng)
    names = _names(rng, rng.randint(4, 9))
    sizes = rng.sample(range(40, 4000), len(names))
    files = {f"{d}/{n}": ("x" * (s - 1)) + "\n" for n, s in zip(names, sizes, strict=True)}
    largest = names[sizes.index(max(sizes))]
    return Draft(
        f"What is the name of the largest file in the directory /root/{d}? "
        "Answer with the file name only.",
        files,
        f"ls -S /root/{d} | head -n 1",
        f"I can list the files in /root/{d} sorted by size, largest first, and take the first.",
        answer=largest,
    )


def _log_lines(rng: random.Random, n: int, day: str) -> list[str]:
    lines = []
    for i in range(n):
        level = rng.choice(_LEVELS)
        message = rng.choice(_MESSAGES).format(n=rng.randint(1, 999))
        lines.append(
            f"{day} {8 + i // 60:02d}:{i % 60:02d}:{rng.randint(0, 59):02d} [{level}] {message}"
        )
    return lines


def _t_grep_count(rng: random.Random) -> Draft:
    d, name = _dir(rng), rng.choice(("app", "server", "worker", "scheduler", "gateway"))
    day = f"2023-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    lines = _log_lines(rng, rng.randint(15, 60), day)
    level = rng.choice(_LEVELS)
    count = sum(f"[{level}]" in line for line in lines)
    if count == 0:
        raise Redraw
    path = f"/root/{d}/{name}.log"
    return Draft(
        f"How many lines in the file {path} contain the word {level}?",
        {f"{d}/{name}.log": "\n".join(lines) + "\n"},
        f"grep -c '{level}' {path}",
        f"I can count the lines of {path} that contain {level} with grep -c.",
        answer=str(count),
    )


def _t_csv_sum(rng: random.Random) -> Draft:
    d, name = _dir(rng), rng.choice(("orders", "sales", "stock", "shipments", "expenses"))
    header = ["id", "item", "quantity", "unit_cost", "warehouse"]
    rows = [
        [
            str(i + 1),
            rng.choice(_STEMS),
            str(rng.randint(1, 500)),
            str(rng.randint(1, 300)),
            rng.choice("ABCD"),
        ]
        for i in range(rng.randint(8, 40))
    ]
    column = rng.choice(("quantity", "unit_cost"))
    index = header.index(column)
    total = sum(int(r[index]) for r in rows)
    path = f"/root/{d}/{name}.csv"
    body = "\n".join(",".join(r) for r in [header, *rows]) + "\n"
    return Draft(
        f"The file {path} is a CSV file whose first line is a header. "
        f"What is the sum of the values in its {column} column?",
        {f"{d}/{name}.csv": body},
        f"awk -F, 'NR>1 {{s+=${index + 1}}} END {{print s}}' {path}",
        f"The {column} column is field {index + 1}; awk can add it up, skipping the header.",
        answer=str(total),
    )


def _t_top_owner(rng: random.Random) -> Draft:
    d = _dir(rng)
    users = rng.sample(_USERS, rng.randint(3, 5))
    owners = [rng.choice(users) for _ in range(rng.randint(8, 25))]
    counts = sorted((owners.count(u) for u in set(owners)), reverse=True)
    if len(counts) > 1 and counts[0] == counts[1]:
        raise Redraw
    top = max(set(owners), key=owners.count)
    names = _names(rng, len(owners))
    lines = [
        f"-rw-r--r-- 1 {o} staff {rng.randint(10, 99999)} {rng.choice(_MONTHS)} "
        f"{rng.randint(1, 28):2d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d} {n}"
        for o, n in zip(owners, names, strict=True)
    ]
    path = f"/root/{d}/listing.txt"
    return Draft(
        f"The file {path} holds a file listing in the format of `ls -l`. Which user owns the "
        "most files in that listing? Answer with the user name only.",
        {f"{d}/listing.txt": "\n".join(lines) + "\n"},
        f"awk '{{print $3}}' {path} | sort | uniq -c | sort -rn | head -n 1 | awk '{{print $2}}'",
        "The owner is the third field; I can count files per owner and take the most frequent.",
        answer=top,
    )


def _t_distinct_ips(rng: random.Random) -> Draft:
    d = _dir(rng)
    pool = [
        f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        for _ in range(rng.randint(3, 12))
    ]
    lines = [
        f"{rng.choice(pool)} - - [10/Oct/2023:13:{i % 60:02d}:{rng.randint(0, 59):02d} +0000] "
        f'"GET /{rng.choice(_STEMS)} HTTP/1.1" {rng.choice((200, 200, 304, 404, 500))} {rng.randint(100, 9999)}'
        for i in range(rng.randint(10, 50))
    ]
    distinct = len({line.split(" ", 1)[0] for line in lines})
    path = f"/root/{d}/access.log"
    return Draft(
        f"How many distinct IP addresses appear in the web server access log {path}? "
        "The IP address is the first field of each line.",
        {f"{d}/access.log": "\n".join(lines) + "\n"},
        f"cut -d' ' -f1 {path} | sort -u | wc -l",
        "I can cut the first field of each line, keep the unique values and count them.",
        answer=str(distinct),
    )


def _t_total_lines(rng: random.Random) -> Draft:
    d = _dir(rng)
    files, total = {}, 0
    for name in _names(rng, rng.randint(2, 6), "txt"):
        n = rng.randint(1, 30)
        total += n
        files[f"{d}/{name}"] = "".join(_line(rng) + "\n" for _ in range(n))
    files[f"{d}/README.md"] = "".join(_line(rng) + "\n" for _ in range(rng.randint(1, 9)))
    return Draft(
        f"How many lines are there in total in all the .txt files directly inside /root/{d}?",
        files,
        f"cat /root/{d}/*.txt | wc -l",
        f"I can concatenate the .txt files of /root/{d} and count the lines.",
        answer=str(total),
    )


def _t_create_file(rng: random.Random) -> Draft:
    d = _dir(rng)
    name = f"{rng.choice(_STEMS)}_{rng.randint(1, 99)}.txt"
    text = f"{_line(rng)} {rng.randint(100, 999)}"
    path = f"/root/{d}/{name}"
    return Draft(
        f"Create a file named {name} in the directory /root/{d} whose content is exactly one "
        f"line: {text}",
        {f"{d}/README": "This directory is yours to use.\n"},
        f"echo '{text}' > {path}",
        f"I can write the line into {path} with echo.",
        check=f'[ "$(cat {path})" = "{text}" ]',
    )


def _t_rename_ext(rng: random.Random) -> Draft:
    d = _dir(rng)
    src, dst = rng.choice((("txt", "md"), ("log", "bak"), ("txt", "old"), ("csv", "tsv")))
    moved = _names(rng, rng.randint(2, 6), src)
    others = [n for n in _names(rng, rng.randint(1, 3), "dat") if n not in moved]
    files = {f"{d}/{n}": _line(rng) + "\n" for n in [*moved, *others]}
    checks = [
        f'[ "$(cat /root/{d}/{n[: -len(src)]}{dst})" = "{files[f"{d}/{n}"].strip()}" ]'
        for n in moved
    ]
    checks += [f"[ -f /root/{d}/{n} ]" for n in others]
    checks.append(f"[ -z \"$(find /root/{d} -name '*.{src}')\" ]")
    return Draft(
        f"In the directory /root/{d}, rename every file with the extension .{src} so that its "
        f"extension becomes .{dst} instead, keeping the rest of each name and the content.",
        files,
        f'cd /root/{d} && for f in *.{src}; do mv "$f" "${{f%.{src}}}.{dst}"; done',
        f"I can loop over the .{src} files in /root/{d} and move each to its .{dst} name.",
        check=" && ".join(checks),
    )


def _t_delete_prefix(rng: random.Random) -> Draft:
    d = _dir(rng)
    prefix = rng.choice(("tmp_", "old_", "cache_", "draft_"))
    doomed = _names(rng, rng.randint(2, 5), prefix=prefix)
    kept = [n for n in _names(rng, rng.randint(2, 6)) if n not in doomed]
    files = {f"{d}/{n}": _line(rng) + "\n" for n in [*doomed, *kept]}
    checks = [f"[ ! -e /root/{d}/{n} ]" for n in doomed] + [f"[ -f /root/{d}/{n} ]" for n in kept]
    return Draft(
        f"Delete every file in /root/{d} whose name starts with '{prefix}', and keep all the "
        "other files.",
        files,
        f"rm -f /root/{d}/{prefix}*",
        f"A glob on the prefix {prefix} selects exactly the files to delete.",
        check=" && ".join(checks),
    )


def _t_chmod(rng: random.Random) -> Draft:
    d = _dir(rng)
    scripts = _names(rng, rng.randint(2, 5), "sh")
    others = [n for n in _names(rng, rng.randint(1, 4), "conf") if n not in scripts]
    files = {f"{d}/{n}": "#!/bin/sh\necho ok\n" for n in scripts}
    files.update({f"{d}/{n}": _line(rng) + "\n" for n in others})
    checks = [f"[ -x /root/{d}/{n} ]" for n in scripts] + [
        f"[ ! -x /root/{d}/{n} ]" for n in others
    ]
    return Draft(
        f"Make every .sh file in /root/{d} executable, and leave the permissions of the other "
        "files as they are.",
        files,
        f"chmod +x /root/{d}/*.sh",
        f"chmod +x on the .sh glob in /root/{d} changes exactly those files.",
        check=" && ".join(checks),
    )


# Answer-checked and check-script tasks, about 2:1.
TEMPLATES: tuple[Callable[[random.Random], Draft], ...] = (
    _t_count_ext,
    _t_largest,
    _t_grep_count,
    _t_csv_sum,
    _t_top_owner,
    _t_distinct_ips,
    _t_total_lines,
    _t_create_file,
    _t_rename_ext,
    _t_delete_prefix,
    _t_chmod,
)


def make_payload(rng: random.Random) -> dict[str, Any]:
    template = rng.choice(TEMPLATES)
    draft = template(rng)
    return {
        "kind": template.__name__.removeprefix("_t_"),
        "description": draft.description,
        "files": draft.files,
        "evaluation": {"match": draft.answer}
        if draft.answer is not None
        else {"check": draft.check},
        "command": draft.command,
        "think": draft.think,
    }


def problem_text(payload: dict[str, Any]) -> str:
    return NEW_PROBLEM + payload["description"]


@lru_cache(maxsize=16)
def _all_tasks(config_json: str) -> dict[str, list[TaskSpec]]:
    config = OSConfig.model_validate_json(config_json)
    return generate_split_tasks(OSEnv.name, config, make_payload, problem_text)


def materialize(root: Path, files: dict[str, str]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(0o644)


# --------------------------------------------------------------------------- the env


class OSEnv(Env):
    name: ClassVar[str] = "os"
    version: ClassVar[str] = "1"
    config_cls: ClassVar[type[FamilyConfig]] = OSConfig

    config: OSConfig

    def __init__(self, config: OSConfig | None = None) -> None:
        super().__init__(config)
        self._sandbox: Sandbox | None = None
        self._cleanup: weakref.finalize | None = None
        self._task: TaskSpec | None = None
        self._rounds = 0
        self._done = True

    def tasks(self, split: str) -> list[TaskSpec]:
        generated = _all_tasks(self.config.model_dump_json(exclude={"task_files"}))
        return split_tasks(generated, split) + file_tasks(self.name, self.config.task_files, split)

    def prompt(self, task: TaskSpec) -> list[Message]:
        first = INSTRUCTION + "Now, my problem is:\n\n" + ONE_SHOT_QUESTION
        return [
            {"role": "user", "content": first},
            *(dict(m) for m in ONE_SHOT),  # type: ignore[misc]
            {"role": "user", "content": problem_text(task.payload)},
        ]

    def reset(self, task: TaskSpec) -> list[Message]:
        """Materialise the task's files in a fresh scratch dir; raises if bwrap is unusable."""
        self.close()
        require_bwrap()
        root = Path(tempfile.mkdtemp(prefix="agentray-os-", dir=self.config.scratch_dir))
        self._cleanup = weakref.finalize(self, shutil.rmtree, root, True)
        materialize(root, task.payload["files"])
        self._sandbox = Sandbox(
            root,
            timeout_s=self.config.command_timeout_s,
            workdir=self.config.workdir,
            max_file_mb=self.config.max_file_mb,
            max_memory_mb=self.config.max_memory_mb,
        )
        self._task = task
        self._rounds = 0
        self._done = False
        return self.prompt(task)

    @property
    def scratch_root(self) -> Path | None:
        """The host directory of the running episode (None between episodes)."""
        return self._sandbox.root if self._sandbox is not None else None

    @staticmethod
    def action_problem(reply: str) -> str | None:
        if parse_action(reply) is None:
            return "no usable `Act:` (bash with a ```bash block, answer(...) or finish)"
        return None

    def step(self, action: str) -> StepResult:
        if self._done or self._sandbox is None or self._task is None:
            return no_episode_result()
        self._rounds += 1
        parsed = parse_action(action)
        if parsed is None:
            return self._finish(
                Status.AGENT_INVALID_ACTION, 0.0, None, {"error": "no valid action"}
            )
        kind, content = parsed
        try:
            if kind != "bash":
                correct = self._judge(content)
                info = {"answer": content, "correct": correct}
                return self._finish(Status.COMPLETED, float(correct), None, info)
            result = self._sandbox.run(content)
        except (OSError, SandboxUnavailable) as e:  # the host failed, not the agent
            return self._finish(Status.TASK_ERROR, 0.0, None, {"error": repr(e)})
        observation = format_output(
            result.output,
            self.config.max_output_chars,
            result.timed_out,
            self.config.command_timeout_s,
        )
        if self._rounds >= self.config.max_rounds:
            return self._finish(Status.TASK_LIMIT_REACHED, 0.0, observation, {})
        return StepResult(observation=observation, done=False, info={"exit_code": result.exit_code})

    def _judge(self, answer: str | None) -> bool:
        evaluation = self._task.payload["evaluation"]
        if "match" in evaluation:
            return answer is not None and answer.strip() == evaluation["match"]
        result = self._sandbox.run(evaluation["check"], [str(answer)])
        return result.exit_code == 0 and not result.timed_out

    def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup()  # removes the scratch dir (once)
        self._cleanup = None
        self._sandbox = None
        self._done = True

    def expert_actions(self, task: TaskSpec) -> list[str]:
        payload = task.payload
        bash = f"Think: {payload['think']}\n\nAct: bash\n\n```bash\n{payload['command']}\n```"
        expected = payload["evaluation"].get("match")
        if expected is None:
            final = "Think: The command ran, so the task is done.\n\nAct: finish"
        else:
            final = f"Think: Now I get the answer, it is {expected}.\n\nAct: answer({expected})"
        return [bash, final]


# --------------------------------------------------------------------------- teacher-written tasks
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
) -> TaskSpec | Rejected:
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
        payload = _proposal_payload(require_object(proposal), config)
        task = TaskSpec(id=task_id, family=OSEnv.name, split="train", seed=0, payload=payload)
        if "match" in payload["evaluation"]:
            _verify_answer(payload, config)
        else:
            _verify_script(payload, config)
        check_replay(OSEnv(config), task)
    except ProposalError as e:
        return e.rejected
    return task


def _proposal_payload(proposal: dict[str, Any], config: OSConfig) -> dict[str, Any]:
    description = require_text(proposal, "description", 2000)
    files = _proposal_files(require(proposal, "files", dict))
    if proposal.get("setup") not in (None, ""):
        files = _files_after_setup(files, require_text(proposal, "setup", 4000), config)
    command = require_text(proposal, "solution", 4000)
    check = require(proposal, "check", dict)
    if ("answer" in check) == ("script" in check):
        raise ProposalError(BAD_FIELD, "the check needs exactly one of 'answer' and 'script'")
    if "answer" in check:
        answer = require(check, "answer", (str, int, float))
        answer = str(answer).strip()
        if not answer or "\n" in answer:
            raise ProposalError(BAD_FIELD, "the check's 'answer' must be one non-empty line")
        evaluation = {"match": answer}
    else:
        evaluation = {"check": require_text(check, "script", 4000)}
    return {
        "kind": "generated",
        "description": description,
        "files": files,
        "evaluation": evaluation,
        "command": command,
        "think": optional_text(proposal, "thought", "I can do this with one bash command."),
    }


def _proposal_files(files: dict[str, Any]) -> dict[str, str]:
    if len(files) > MAX_PROPOSAL_FILES:
        raise ProposalError(BAD_FIELD, f"more than {MAX_PROPOSAL_FILES} files")
    for path, content in files.items():
        parts = path.split("/")
        if not all(_PATH_PART.fullmatch(part) for part in parts) or len(parts) > 8:
            raise ProposalError(
                BAD_FIELD, f"file path {path!r} is not a plain relative path under /root"
            )
        if not isinstance(content, str):
            raise ProposalError(BAD_FIELD, f"the content of {path!r} is not a string")
    _check_size(files)
    _check_no_file_under_file(files)
    return dict(files)


def _check_size(files: dict[str, str]) -> None:
    if sum(len(content.encode()) for content in files.values()) > MAX_PROPOSAL_BYTES:
        raise ProposalError(BAD_FIELD, f"the files hold more than {MAX_PROPOSAL_BYTES} bytes")


def _check_no_file_under_file(files: dict[str, str]) -> None:
    for path in files:
        parts = path.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise ProposalError(BAD_FIELD, f"{path!r} lies under the file {parts[:i]!r}")


@contextlib.contextmanager
def _fresh_sandbox(files: dict[str, str], config: OSConfig) -> Iterator[Sandbox]:
    """A sandbox over a fresh scratch copy of ``files``, set up as ``OSEnv.reset`` does."""
    require_bwrap()
    with tempfile.TemporaryDirectory(
        prefix="agentray-os-verify-", dir=config.scratch_dir, ignore_cleanup_errors=True
    ) as tmp:
        root = Path(tmp)
        materialize(root, files)
        yield Sandbox(
            root,
            timeout_s=config.command_timeout_s,
            workdir=config.workdir,
            max_file_mb=config.max_file_mb,
            max_memory_mb=config.max_memory_mb,
        )


def _files_after_setup(files: dict[str, str], setup: str, config: OSConfig) -> dict[str, str]:
    with _fresh_sandbox(files, config) as box:
        _require_success(box.run(setup), "setup", SETUP_ERROR, config)
        return _snapshot(box.root)


def _snapshot(root: Path) -> dict[str, str]:
    """The plain text files under ``root``; anything the task format cannot keep (links,
    executables, empty directories, binary content) is the setup's error."""
    files: dict[str, str] = {}
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        if not dirs and not names and here != root:
            raise ProposalError(SETUP_ERROR, f"the setup leaves the empty directory {here.name}")
        for name in [*dirs, *names]:
            path = here / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise ProposalError(SETUP_ERROR, f"the setup leaves {relative}, not a plain file")
            if path.is_file():
                if path.stat().st_mode & 0o111:
                    raise ProposalError(
                        SETUP_ERROR, f"the setup leaves {relative} executable (tasks keep 644)"
                    )
                try:
                    files[relative] = path.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    raise ProposalError(SETUP_ERROR, f"{relative} is not UTF-8 text") from None
    if len(files) > MAX_PROPOSAL_FILES:
        raise ProposalError(SETUP_ERROR, f"the setup leaves more than {MAX_PROPOSAL_FILES} files")
    _check_size(files)
    return dict(sorted(files.items()))


def _require_success(result: CommandResult, what: str, code: str, config: OSConfig) -> None:
    if result.timed_out:
        raise ProposalError(code, f"the {what} runs longer than {config.command_timeout_s:g} s")
    if result.exit_code != 0:
        raise ProposalError(
            code, f"the {what} exits {result.exit_code}: {result.output.strip()[-300:]!r}"
        )


def _verify_answer(payload: dict[str, Any], config: OSConfig) -> None:
    expected = payload["evaluation"]["match"]
    with _fresh_sandbox(payload["files"], config) as box:
        result = box.run(payload["command"])
    _require_success(result, "solution", SOLUTION_ERROR, config)
    printed = result.output.strip()
    if printed != expected:
        raise ProposalError(
            CHECK_FAILED, f"the solution prints {printed[:200]!r}, the check expects {expected!r}"
        )


def _verify_script(payload: dict[str, Any], config: OSConfig) -> None:
    check = payload["evaluation"]["check"]
    args = [str(None)]  # what the env passes after `Act: finish`
    with _fresh_sandbox(payload["files"], config) as box:
        untouched = box.run(check, args)
    if untouched.exit_code == 0 and not untouched.timed_out:
        raise ProposalError(
            CHECK_PASSES_WITHOUT_SOLUTION, "the check passes on the untouched files already"
        )
    with _fresh_sandbox(payload["files"], config) as box:
        _require_success(box.run(payload["command"]), "solution", SOLUTION_ERROR, config)
        after = box.run(check, args)
    if after.timed_out:
        raise ProposalError(
            CHECK_ERROR, f"the check runs longer than {config.command_timeout_s:g} s"
        )
    if after.exit_code != 0:
        raise ProposalError(
            CHECK_FAILED,
            f"after the solution the check exits {after.exit_code}: {after.output.strip()[-300:]!r}",
        )
