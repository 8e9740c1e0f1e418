"""Seeded task generation: files to materialise, a question or change, its check."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from agentray.envs.generate import Redraw, generate_split_tasks
from agentray.envs.os.config import OSConfig
from agentray.envs.os.prompt import NEW_PROBLEM
from agentray.types import TaskSpec


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
def all_tasks(config_json: str) -> dict[str, list[TaskSpec]]:
    config = OSConfig.model_validate_json(config_json)
    return generate_split_tasks("os", config, make_payload, problem_text)


def materialize(root: Path, files: dict[str, str]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        path.chmod(0o644)
