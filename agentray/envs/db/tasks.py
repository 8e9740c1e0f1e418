"""Seeded task generation: a table, a question and its gold SQL and answer."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

from agentray.envs.db.config import MODIFYING, DBConfig
from agentray.envs.db.database import create_table, ident, quote, table_hash
from agentray.envs.db.domains import DOMAINS, Domain
from agentray.envs.generate import Redraw, generate_split_tasks
from agentray.types import TaskSpec


def _rows(rng: random.Random, domain: Domain, n: int) -> list[list[Any]]:
    keys: list[str] = []
    while len(keys) < n:
        key = domain.make_key(rng)
        if key not in keys:
            keys.append(key)
    return [[key, *(domain.random_value(rng, c) for c in domain.columns[1:])] for key in keys]


@dataclass
class Draft:
    """What a question template produces."""

    question: str
    sql: str
    type: str  # SELECT | INSERT | UPDATE | DELETE
    category: str  # AgentBench's finer type: counting, aggregation-SUM, ranking...
    thought: str


class Ctx:
    """A generated table and helpers for question templates."""

    def __init__(self, rng: random.Random, domain: Domain, table: str, rows: list[list[Any]]):
        self.rng, self.d, self.table, self.rows = rng, domain, table, rows
        self.t = ident(table)

    def col(self, name: str) -> list[Any]:
        return [r[self.d.columns.index(name)] for r in self.rows]

    def cat(self) -> tuple[str, str]:
        column = self.rng.choice(list(self.d.cats))
        return column, self.rng.choice(self.col(column))

    def num(self, integer_only: bool = False) -> str:
        options = [c for c, (k, _, _) in self.d.nums.items() if k == "INTEGER" or not integer_only]
        return self.rng.choice(options)

    def threshold(self, column: str) -> int | float:
        """A value strictly between the column's min and max, so the filter is partial."""
        values = sorted(set(self.col(column)))
        if len(values) < 3:
            raise Redraw
        low, high = values[1], values[-2]
        x = self.rng.uniform(low, high)
        return int(x) if self.d.sql_type(column) == "INTEGER" else round(x, 1)


def _q_count_cat(c: Ctx) -> Draft:
    column, value = c.cat()
    return Draft(
        f"How many {c.d.entity} have the {column} '{value}'?",
        f"SELECT COUNT(*) FROM {c.t} WHERE {ident(column)} = {quote(value)};",
        "SELECT",
        "counting",
        f"I need to count the rows whose {column} is '{value}'.",
    )


def _q_count_num(c: Ctx) -> Draft:
    column = c.num()
    x = c.threshold(column)
    return Draft(
        f"How many {c.d.entity} have a {column} greater than {x}?",
        f"SELECT COUNT(*) FROM {c.t} WHERE {ident(column)} > {x};",
        "SELECT",
        "counting",
        f"I need to count the rows whose {column} is greater than {x}.",
    )


_AGGREGATES = {"SUM": "total", "AVG": "average", "MAX": "highest", "MIN": "lowest"}


def _q_aggregate(c: Ctx) -> Draft:
    func = c.rng.choice(list(_AGGREGATES))
    column, value = c.cat()
    n = c.num()
    return Draft(
        f"What is the {_AGGREGATES[func]} {n} of the {c.d.entity} whose {column} is '{value}'?",
        f"SELECT {func}({ident(n)}) FROM {c.t} WHERE {ident(column)} = {quote(value)};",
        "SELECT",
        f"aggregation-{func}",
        f"I need the {func} of {n} over the rows whose {column} is '{value}'.",
    )


def _q_rank(c: Ctx) -> Draft:
    n = c.num()
    highest = c.rng.random() < 0.5
    k = c.rng.choice((1, 1, 2, 3))
    values = sorted(c.col(n), reverse=highest)
    if len(set(values[: k + 1])) < k + 1:  # a tie at the cut makes the answer ambiguous
        raise Redraw
    word = "highest" if highest else "lowest"
    order = "DESC" if highest else "ASC"
    what = f"the {c.d.singular}" if k == 1 else f"the {k} {c.d.entity}"
    verb = "has" if k == 1 else "have"
    return Draft(
        f"Which {c.d.key} belongs to {what} that {verb} the {word} {n}?"
        if k == 1
        else f"List the {c.d.key} of {what} with the {word} {n}.",
        f"SELECT {ident(c.d.key)} FROM {c.t} ORDER BY {ident(n)} {order} LIMIT {k};",
        "SELECT",
        "ranking",
        f"I need to sort the rows by {n} ({word} first) and take the top {k}.",
    )


def _q_filter(c: Ctx) -> Draft:
    column, value = c.cat()
    n = c.num()
    x = c.threshold(n)
    hits = [
        r for r in c.rows if r[c.d.columns.index(column)] == value and r[c.d.columns.index(n)] > x
    ]
    if not 1 <= len(hits) <= 6:
        raise Redraw
    return Draft(
        f"List the {c.d.key} of every {c.d.singular} whose {column} is '{value}' and whose {n} is above {x}.",
        f"SELECT {ident(c.d.key)} FROM {c.t} WHERE {ident(column)} = {quote(value)} AND {ident(n)} > {x};",
        "SELECT",
        "comparison",
        f"I need the {c.d.key} of rows with {column} '{value}' and {n} above {x}.",
    )


def _q_lookup(c: Ctx) -> Draft:
    key = c.rng.choice(c.col(c.d.key))
    column = c.rng.choice(c.d.columns[1:])
    return Draft(
        f"What is the {column} of the {c.d.singular} whose {c.d.key} is '{key}'?",
        f"SELECT {ident(column)} FROM {c.t} WHERE {ident(c.d.key)} = {quote(key)};",
        "SELECT",
        "other",
        f"I need to look up the {column} of the row whose {c.d.key} is '{key}'.",
    )


def _q_group(c: Ctx) -> Draft:
    column = c.rng.choice(list(c.d.cats))
    counts = sorted((c.col(column).count(v) for v in set(c.col(column))), reverse=True)
    if len(counts) > 1 and counts[0] == counts[1]:
        raise Redraw
    return Draft(
        f"Which {column} has the largest number of {c.d.entity}?",
        f"SELECT {ident(column)} FROM {c.t} GROUP BY {ident(column)} ORDER BY COUNT(*) DESC LIMIT 1;",
        "SELECT",
        "counting",
        f"I need to group the rows by {column} and take the group with the most rows.",
    )


def _q_insert(c: Ctx) -> Draft:
    keys = set(c.col(c.d.key))
    key = c.d.make_key(c.rng)
    if key in keys:
        raise Redraw
    values = [key, *(c.d.random_value(c.rng, col) for col in c.d.columns[1:])]
    described = ", ".join(f"{col} {quote(v)}" for col, v in zip(c.d.columns, values, strict=True))
    cols = ", ".join(ident(col) for col in c.d.columns)
    return Draft(
        f"Add a new {c.d.singular} to the table with {described}.",
        f"INSERT INTO {c.t} ({cols}) VALUES ({', '.join(quote(v) for v in values)});",
        "INSERT",
        "INSERT",
        f"I need to insert one row for the new {c.d.singular}.",
    )


def _q_update(c: Ctx) -> Draft:
    if c.rng.random() < 0.5:
        key = c.rng.choice(c.col(c.d.key))
        n = c.num()
        value = c.d.random_value(c.rng, n)
        return Draft(
            f"Set the {n} of the {c.d.singular} whose {c.d.key} is '{key}' to {value}.",
            f"UPDATE {c.t} SET {ident(n)} = {quote(value)} WHERE {ident(c.d.key)} = {quote(key)};",
            "UPDATE",
            "UPDATE",
            f"I need to update the {n} of one row.",
        )
    column, value = c.cat()
    n = c.num(integer_only=True)
    step = c.rng.randint(1, 20)
    return Draft(
        f"Increase the {n} of every {c.d.singular} whose {column} is '{value}' by {step}.",
        f"UPDATE {c.t} SET {ident(n)} = {ident(n)} + {step} WHERE {ident(column)} = {quote(value)};",
        "UPDATE",
        "UPDATE",
        f"I need to add {step} to {n} on the rows whose {column} is '{value}'.",
    )


def _q_delete(c: Ctx) -> Draft:
    if c.rng.random() < 0.5:
        key = c.rng.choice(c.col(c.d.key))
        return Draft(
            f"Remove the {c.d.singular} whose {c.d.key} is '{key}' from the table.",
            f"DELETE FROM {c.t} WHERE {ident(c.d.key)} = {quote(key)};",
            "DELETE",
            "DELETE",
            f"I need to delete the row whose {c.d.key} is '{key}'.",
        )
    n = c.num()
    x = c.threshold(n)
    return Draft(
        f"Delete all {c.d.entity} whose {n} is less than {x}.",
        f"DELETE FROM {c.t} WHERE {ident(n)} < {x};",
        "DELETE",
        "DELETE",
        f"I need to delete the rows whose {n} is below {x}.",
    )


# Weighted roughly like DBBench: mostly SELECT-type, a third modifications.
TEMPLATES: tuple[Callable[[Ctx], Draft], ...] = (
    _q_count_cat,
    _q_count_num,
    _q_aggregate,
    _q_aggregate,
    _q_rank,
    _q_filter,
    _q_lookup,
    _q_group,
    _q_insert,
    _q_update,
    _q_update,
    _q_delete,
)


def problem_text(payload: dict[str, Any]) -> str:
    """The problem turn, as AgentBench builds it: description + "\\n" + add_description."""
    headers = ",".join(name for name, _ in payload["columns"])
    return (
        f"{payload['question']}\nThe name of this table is {payload['table']}, "
        f"and the headers of this table are {headers}."
    )


def make_payload(rng: random.Random, min_rows: int = 8, max_rows: int = 18) -> dict[str, Any]:
    domain = rng.choice(DOMAINS)
    table = rng.choice(domain.tables)
    rows = _rows(rng, domain, rng.randint(min_rows, max_rows))
    draft = rng.choice(TEMPLATES)(Ctx(rng, domain, table, rows))
    payload = {
        "table": table,
        "columns": [[c, domain.sql_type(c)] for c in domain.columns],
        "rows": rows,
        "question": draft.question,
        "sql": draft.sql,
        "type": draft.type,
        "category": draft.category,
        "thought": draft.thought,
    }
    payload.update(_gold(payload))
    return payload


def _gold(payload: dict[str, Any]) -> dict[str, Any]:
    """Run the gold SQL on a fresh copy: the expected answer, or the expected table hash."""
    conn = sqlite3.connect(":memory:")
    try:
        create_table(conn, payload)
        columns = [name for name, _ in payload["columns"]]
        before = table_hash(conn, payload["table"], columns)
        result = conn.execute(payload["sql"]).fetchall()
        if payload["type"] in MODIFYING:
            after = table_hash(conn, payload["table"], columns)
            if after == before:  # a no-op modification would pass without doing anything
                raise Redraw
            return {"answer_hash": after}
    finally:
        conn.close()
    answer = [value for row in result for value in row]
    if not answer or any(v is None for v in answer):
        raise Redraw
    return {"answer": answer}


@lru_cache(maxsize=16)
def all_tasks(config_json: str) -> dict[str, list[TaskSpec]]:
    config = DBConfig.model_validate_json(config_json)
    settings = config.model_dump(include={"min_rows", "max_rows"})
    return generate_split_tasks("db", config, partial(make_payload, **settings), problem_text)
