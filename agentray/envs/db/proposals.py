"""Teacher-written DB tasks (agentray instruct; see agentray/envs/proposals.py)."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from agentray.envs import proposals as shared
from agentray.envs.db.config import MODIFYING, DBConfig
from agentray.envs.db.database import GuardedDatabase, create_table, ident, quote
from agentray.envs.db.env import DBEnv
from agentray.envs.db.score import answers_match
from agentray.types import TaskSpec

# (agentray instruct: see agentray/envs/proposals.py for the contract)
PROPOSAL_GUIDE = """DB tasks: a question about one SQLite table that an agent answers, or a change \
to the table that it makes, with one SQL statement.
A task is a JSON object with these fields:
- "table": the table's name (letters, digits and underscores)
- "columns": [[name, type], ...], type INTEGER, REAL or TEXT
- "rows": the table's rows, [[value, ...], ...] in column order (3 to 60 rows)
- "question": the question or instruction in plain English (the table's name and headers \
are added to it)
- "type": SELECT for a question; INSERT, UPDATE or DELETE for a change to the table
- "thought": one sentence on how to solve it
- "solution": one SQL statement that answers the question or makes the change
- "check": for SELECT, {"answer": [...]}: the values the solution returns, row by row; for \
INSERT / UPDATE / DELETE, {"sql": "SELECT ...", "expected": [...]}: what that SELECT returns \
after the change, and does not return before it"""


SQL_TYPES = ("INTEGER", "REAL", "TEXT")


PROPOSAL_ROWS = (3, 60)


MAX_PROPOSAL_COLUMNS = 20


MAX_ANSWER_ITEMS = 50


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def instruction_of(payload: dict[str, Any]) -> str:
    """The text near-duplicates are measured on: the question."""
    return payload["question"]


def proposal_from_task(task: TaskSpec) -> dict[str, Any]:
    """A DB task written in the proposal format (a seed example for the teacher)."""
    p = task.payload
    if "check" in p:
        check = p["check"]
    elif p["type"] in MODIFYING:
        check = modification_check(p)
    else:
        check = {"answer": p["answer"]}
    return {
        "table": p["table"],
        "columns": p["columns"],
        "rows": p["rows"],
        "question": p["question"],
        "type": p["type"],
        "thought": p["thought"],
        "solution": p["sql"],
        "check": check,
    }


def modification_check(payload: dict[str, Any]) -> dict[str, Any]:
    """A SELECT whose result tells the table after the gold change from the one before
    (the rows are keyed by their first column): the new row, a changed cell, or the count."""
    conn = sqlite3.connect(":memory:")
    try:
        create_table(conn, payload)
        table = ident(payload["table"])
        before = {row[0]: row for row in conn.execute(f"SELECT * FROM {table}")}
        conn.execute(payload["sql"])
        after = {row[0]: row for row in conn.execute(f"SELECT * FROM {table}")}
    finally:
        conn.close()
    key = ident(payload["columns"][0][0])
    for k in after.keys() - before.keys():
        return {"sql": f"SELECT COUNT(*) FROM {table} WHERE {key} = {quote(k)};", "expected": [1]}
    for k, row in after.items():
        for (column, _), old, new in zip(payload["columns"], before.get(k, row), row, strict=True):
            if not answers_match([old], [new]):
                sql = f"SELECT {ident(column)} FROM {table} WHERE {key} = {quote(k)};"
                return {"sql": sql, "expected": [new]}
    return {"sql": f"SELECT COUNT(*) FROM {table};", "expected": [len(after)]}


def task_from_proposal(
    proposal: Any, task_id: str, config: DBConfig | None = None
) -> TaskSpec | shared.Rejected:
    """The proposal as a train task, verified in real SQLite under the env's guards.

    The table must build; the solution must run without error; a SELECT must return a
    non-empty answer (no NULL) equal to the check's and leave the table as it was; an
    INSERT / UPDATE / DELETE must change the table, and its check SELECT must return the
    expected values after the change but not before it (a check that already holds on the
    untouched table verifies nothing). Finally the expert replays the task in ``DBEnv``
    and must win. The task's gold (answer, or the changed table's hash) is what the
    solution produced."""
    config = config or DBConfig()
    try:
        payload = _proposal_payload(shared.require_object(proposal))
        _verify_proposal(payload, config)
        task = TaskSpec(id=task_id, family=DBEnv.name, split="train", seed=0, payload=payload)
        shared.check_replay(DBEnv(config), task)
    except shared.ProposalError as e:
        return e.rejected
    return task


def _proposal_payload(proposal: dict[str, Any]) -> dict[str, Any]:
    table = shared.require_text(proposal, "table", 64)
    if not _IDENT.fullmatch(table):
        raise shared.ProposalError(
            shared.BAD_FIELD, f"table name {table!r} is not a plain identifier"
        )
    columns = _proposal_columns(shared.require(proposal, "columns", list))
    rows = _proposal_rows(shared.require(proposal, "rows", list), len(columns))
    kind = shared.require_text(proposal, "type", 16).upper()
    if kind not in ("SELECT", *MODIFYING):
        raise shared.ProposalError(
            shared.BAD_FIELD, f"type {kind!r} is not SELECT, INSERT, UPDATE or DELETE"
        )
    solution = shared.require_text(proposal, "solution")
    statement = _statement_kind(solution)
    if statement != kind:
        raise shared.ProposalError(
            shared.BAD_FIELD, f"type is {kind} but the solution's statement is {statement}"
        )
    return {
        "table": table,
        "columns": columns,
        "rows": rows,
        "question": shared.require_text(proposal, "question", 1000),
        "sql": solution,
        "type": kind,
        "category": "generated",
        "thought": shared.optional_text(
            proposal, "thought", "I can answer this with one SQL statement."
        ),
        "check": shared.require(proposal, "check", dict),
    }


def _proposal_columns(columns: list[Any]) -> list[list[str]]:
    if not 1 <= len(columns) <= MAX_PROPOSAL_COLUMNS:
        raise shared.ProposalError(
            shared.BAD_FIELD, f"'columns' must have 1 to {MAX_PROPOSAL_COLUMNS} entries"
        )
    out: list[list[str]] = []
    for column in columns:
        ok = (
            isinstance(column, list)
            and len(column) == 2
            and all(isinstance(c, str) for c in column)
        )
        if not ok or not _IDENT.fullmatch(column[0]) or column[1].upper() not in SQL_TYPES:
            raise shared.ProposalError(
                shared.BAD_FIELD, f"column {column!r} is not [identifier, INTEGER|REAL|TEXT]"
            )
        out.append([column[0], column[1].upper()])
    names = [name.lower() for name, _ in out]
    if len(set(names)) != len(names):
        raise shared.ProposalError(shared.BAD_FIELD, "two columns share a name")
    return out


def _proposal_rows(rows: list[Any], width: int) -> list[list[Any]]:
    low, high = PROPOSAL_ROWS
    if not low <= len(rows) <= high:
        raise shared.ProposalError(
            shared.BAD_FIELD, f"'rows' must have {low} to {high} rows (has {len(rows)})"
        )
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise shared.ProposalError(shared.BAD_FIELD, f"row {i} is not a list of {width} values")
        for value in row:
            if not _plain_value(value):
                raise shared.ProposalError(
                    shared.BAD_FIELD, f"row {i}: {value!r} is not a number, a short string or null"
                )
    return rows


def _plain_value(value: Any) -> bool:
    if isinstance(value, str):
        return len(value) <= 200
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _statement_kind(sql: str) -> str:
    """The statement's verb: its first word, or after a WITH clause the first word outside
    parentheses that is one of SELECT / INSERT / UPDATE / DELETE."""
    words = re.findall(r"\w+|[()]", sql)
    if not words:
        return "?"
    if words[0].upper() != "WITH":
        return words[0].upper()
    depth = 0
    for word in words[1:]:
        depth += {"(": 1, ")": -1}.get(word, 0)
        if depth == 0 and word.upper() in ("SELECT", *MODIFYING):
            return word.upper()
    return "WITH"


def _verify_proposal(payload: dict[str, Any], config: DBConfig) -> None:
    try:
        db = GuardedDatabase(payload, config.query_timeout_s)
    except (sqlite3.Error, ValueError, OverflowError) as e:
        raise shared.ProposalError(shared.SETUP_ERROR, f"the table cannot be built: {e}") from None
    try:
        columns = [name for name, _ in payload["columns"]]
        before = db.table_hash(payload["table"], columns)
        if payload["type"] == "SELECT":
            answer = _verify_select(db, payload)
            if db.table_hash(payload["table"], columns) != before:
                raise shared.ProposalError(shared.BAD_FIELD, "a SELECT solution changed the table")
            payload["answer"] = answer
        else:
            payload["answer_hash"] = _verify_modification(db, payload, columns, before)
    finally:
        db.close()


def _verify_select(db: GuardedDatabase, payload: dict[str, Any]) -> list[Any]:
    expected = _check_values(payload["check"], "answer")
    answer = _run(db, payload["sql"], shared.SOLUTION_ERROR, "solution")
    if not answer or any(v is None for v in answer):
        raise shared.ProposalError(shared.EMPTY_ANSWER, f"the solution returns {answer!r}")
    if not answers_match(answer, expected):
        raise shared.ProposalError(
            shared.CHECK_FAILED, f"the solution returns {answer!r}, the check expects {expected!r}"
        )
    return answer


def _verify_modification(
    db: GuardedDatabase, payload: dict[str, Any], columns: list[str], before: str | None
) -> str:
    check = payload["check"]
    check_sql = shared.require_text(check, "sql")
    if _statement_kind(check_sql) != "SELECT":
        raise shared.ProposalError(shared.BAD_FIELD, "the check's 'sql' must be a SELECT")
    expected = _check_values(check, "expected")
    if answers_match(_run(db, check_sql, shared.CHECK_ERROR, "check"), expected):
        raise shared.ProposalError(
            shared.CHECK_PASSES_WITHOUT_SOLUTION,
            f"the check returns {expected!r} on the untouched table already",
        )
    _run(db, payload["sql"], shared.SOLUTION_ERROR, "solution")
    after = db.table_hash(payload["table"], columns)
    if after is None:
        raise shared.ProposalError(shared.SOLUTION_ERROR, "the solution drops or breaks the table")
    if after == before:
        raise shared.ProposalError(shared.NO_OP_SOLUTION, "the solution leaves the table unchanged")
    got = _run(db, check_sql, shared.CHECK_ERROR, "check")
    if not answers_match(got, expected):
        raise shared.ProposalError(
            shared.CHECK_FAILED, f"after the solution the check returns {got!r}, not {expected!r}"
        )
    return after


def _check_values(check: dict[str, Any], name: str) -> list[Any]:
    values = shared.require(check, name, list)
    if not values:
        raise shared.ProposalError(shared.BAD_FIELD, f"the check's {name!r} is empty")
    items: list[Any] = []
    for value in values:  # rows written as lists are flattened, as the answer parser does
        items.extend(value if isinstance(value, list) else [value])
    return items


def _run(db: GuardedDatabase, sql: str, code: str, what: str) -> list[Any]:
    """The statement's values, row by row; a failure is ``code``."""
    try:
        rows = db.fetch(sql, MAX_ANSWER_ITEMS + 1)
    except (sqlite3.Error, sqlite3.Warning, ValueError, OverflowError) as e:
        detail = f"runs longer than {db.timeout_s:g} s" if str(e) == "interrupted" else str(e)
        raise shared.ProposalError(code, f"the {what} fails: {detail}") from None
    values = [value for row in rows for value in row]
    if len(values) > MAX_ANSWER_ITEMS:
        raise shared.ProposalError(
            shared.BAD_FIELD, f"the {what} returns more than {MAX_ANSWER_ITEMS} values"
        )
    return values
