"""The DB family in AgentBench's DBBench format, over a fresh in-memory SQLite database.

Each task is one generated table (several domains: employees, products, cities, matches,
books, students, flights) and one question. SELECT-type questions are scored by comparing the
agent's ``Final Answer`` with the gold answer (as sets of strings, numbers with a tolerance);
INSERT / UPDATE / DELETE questions by hashing the table after the episode and comparing with
the hash of a fresh copy that ran the gold SQL. Both are computed when the task is generated.

The agent's SQL runs under an authorizer that denies ATTACH / DETACH (and so
``VACUUM INTO``), every PRAGMA but read-only schema introspection, ``load_extension`` and any
other schema than the task's own, and under a progress handler that interrupts a statement
after ``query_timeout_s``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import random
import re
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
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
    EMPTY_ANSWER,
    NO_OP_SOLUTION,
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
from agentray.types import Message, Status, StepResult, TaskSpec

# AgentBench DBBench's prompt (src/server/tasks/dbbench/__init__.py, v0.2), verbatim.
INSTRUCTION = """I will ask you a question, then you should help me operate a MySQL database with SQL to answer the question.
You have to explain the problem and your solution to me and write down your thoughts.
After thinking and explaining thoroughly, every round you can choose to operate or to answer.
your operation should be like this:
Action: Operation
```sql
SELECT * FROM table WHERE condition;
```
You MUST put SQL in markdown format without any other comments. Your SQL should be in one line.
Every time you can only execute one SQL statement. I will only execute the statement in the first SQL code block. Every time you write a SQL, I will execute it for you and give you the output.
If you are done operating, and you want to commit your final answer, then write down:
Action: Answer
Final Answer: ["ANSWER1", "ANSWER2", ...]
DO NOT write this pattern unless you are sure about your answer. I expect an accurate and correct answer.
Your answer should be accurate. Your answer must be exactly the same as the correct answer.
If the question is about modifying the database, then after done operation, your answer field can be anything.
If your response cannot match any pattern I mentioned earlier, you will be judged as FAIL immediately.
Your input will be raw MySQL response, you have to deal with it by yourself."""

# A 1-shot demonstration on a table no generated task uses.
DEMO: list[Message] = [
    {
        "role": "user",
        "content": "What is the average population of the cities located in Norway?\n"
        "The name of this table is nordic_cities, and the headers of this table are "
        "city,country,population.",
    },
    {
        "role": "assistant",
        "content": "To find the average population of the cities in Norway, I need the mean of "
        "the population column over the rows whose country is Norway.\nAction: Operation\n"
        "```sql\nSELECT AVG(`population`) FROM `nordic_cities` WHERE `country` = 'Norway';\n```",
        "loss": False,
    },
    {"role": "user", "content": "[(354500.0,)]"},
    {
        "role": "assistant",
        "content": "The average population of the cities in Norway is 354500.0.\n"
        'Action: Answer\nFinal Answer: ["354500.0"]',
        "loss": False,
    },
]

MODIFYING = ("INSERT", "UPDATE", "DELETE")
TRUNCATED = "[TRUNCATED]"
# Read-only schema introspection is the only PRAGMA the agent may run.
_ALLOWED_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo"}
)
_DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit"})


class DBConfig(FamilyConfig):
    max_rounds: int = 15
    query_timeout_s: float = 2.0
    min_rows: int = 8
    max_rows: int = 18
    max_observation_chars: int = 800
    one_shot: bool = True  # False: AgentBench's exact opening (instruction, "Ok.", question)
    task_files: list[str] = task_files_field()


# --------------------------------------------------------------------------- domains


@dataclass(frozen=True)
class Domain:
    entity: str  # plural noun used in questions
    singular: str
    tables: tuple[str, ...]
    key: str  # unique text column
    make_key: Callable[[random.Random], str]
    cats: dict[str, tuple[str, ...]]
    nums: dict[str, tuple[str, float, float]]  # column -> (INTEGER|REAL, low, high)
    columns: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", (self.key, *self.cats, *self.nums))

    def sql_type(self, column: str) -> str:
        return self.nums[column][0] if column in self.nums else "TEXT"

    def random_value(self, rng: random.Random, column: str) -> Any:
        if column == self.key:
            return self.make_key(rng)
        if column in self.cats:
            return rng.choice(self.cats[column])
        kind, low, high = self.nums[column]
        if kind == "INTEGER":
            return rng.randint(int(low), int(high))
        return round(rng.uniform(low, high), 2 if high > 10 else 1)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_FIRST = _words(
    "Alice Bruno Chloe Dmitri Elena Farid Grace Hiro Ines Jonas Keiko Liam Maya Nikolai "
    "Olga Pedro Quinn Rosa Sven Tara Umar Vera Wendell Ximena Yusuf Zoe Amara Bennett "
    "Carmen Dario Esme Felix Greta Hamid Isla Joaquin"
)
_LAST = _words(
    "Moreno Schmidt Okafor Tanaka Novak Larsen Patel Rossi Kowalski Dubois Haddad Lindqvist "
    "Fischer Costa Nguyen Brennan Ivanova Sato Mendes Kaur Becker Silva Horvat Jensen"
)
_ADJ = _words(
    "Steel Velvet Rapid Compact Golden Quiet Arctic Smart Rustic Solar Crimson Nimble "
    "Classic Urban Lunar Breeze Titan Pixel Cedar Coral"
)
_NOUN = _words(
    "Kettle Lamp Backpack Blender Drone Speaker Notebook Jacket Tent Helmet Mixer Monitor "
    "Sneaker Router Camera Scooter Puzzle Skillet Printer Umbrella"
)
_SYL = _words(
    "bar cel dor fen gal har ist kor lan mir nor ost pra quin ros sal tor ulm ven wes zar"
)
_WORDS = _words(
    "silent river winter garden hidden empire crimson tide broken compass last harbor "
    "golden orchard distant signal paper moon iron forest glass city northern light"
)


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def _product(rng: random.Random) -> str:
    return f"{rng.choice(_ADJ)} {rng.choice(_NOUN)} {rng.randint(100, 999)}"


def _place(rng: random.Random) -> str:
    return "".join(rng.choice(_SYL) for _ in range(rng.randint(2, 3))).capitalize()


def _title(rng: random.Random) -> str:
    a, b = rng.sample(_WORDS, 2)
    return f"The {a.capitalize()} {b.capitalize()}"


def _code(prefix: str) -> Callable[[random.Random], str]:
    return lambda rng: f"{prefix}{rng.randint(1000, 9999)}"


DOMAINS: tuple[Domain, ...] = (
    Domain(
        "employees",
        "employee",
        ("employees", "staff", "employee_records"),
        "name",
        _person,
        {
            "department": ("Sales", "Engineering", "Marketing", "Finance", "Support", "HR"),
            "city": ("Boston", "Denver", "Austin", "Seattle", "Chicago"),
        },
        {
            "salary": ("INTEGER", 30000, 150000),
            "age": ("INTEGER", 21, 65),
            "years_of_service": ("INTEGER", 0, 30),
        },
    ),
    Domain(
        "products",
        "product",
        ("products", "inventory", "catalog"),
        "product_name",
        _product,
        {
            "category": ("Electronics", "Kitchen", "Garden", "Toys", "Books", "Sports"),
            "supplier": ("Acme", "Globex", "Initech", "Umbrella", "Stark"),
        },
        {
            "price": ("REAL", 2, 500),
            "stock": ("INTEGER", 0, 400),
            "rating": ("REAL", 1, 5),
        },
    ),
    Domain(
        "cities",
        "city",
        ("cities", "city_stats", "municipalities"),
        "city",
        _place,
        {
            "country": ("Freedonia", "Genovia", "Latveria", "Wakanda", "Zubrowka"),
            "region": ("North", "South", "East", "West", "Central"),
        },
        {
            "population": ("INTEGER", 10000, 3000000),
            "area_km2": ("REAL", 20, 2000),
            "founded": ("INTEGER", 1100, 1950),
        },
    ),
    Domain(
        "matches",
        "match",
        ("matches", "fixtures", "game_results"),
        "match_code",
        _code("M-"),
        {
            "home_team": ("Lions", "Falcons", "Rovers", "United", "Rangers", "Comets"),
            "stadium": ("Riverside", "Hillcrest", "Harbor Park", "Old Mill"),
        },
        {
            "home_goals": ("INTEGER", 0, 6),
            "away_goals": ("INTEGER", 0, 6),
            "attendance": ("INTEGER", 5000, 80000),
            "season": ("INTEGER", 2015, 2023),
        },
    ),
    Domain(
        "books",
        "book",
        ("books", "library_books", "book_catalog"),
        "title",
        _title,
        {
            "genre": ("Mystery", "Fantasy", "Biography", "Science", "Romance", "History"),
            "publisher": ("Penfold", "Larkspur", "Bluegate", "Northwind"),
        },
        {
            "year": ("INTEGER", 1950, 2023),
            "pages": ("INTEGER", 90, 900),
            "rating": ("REAL", 1, 5),
        },
    ),
    Domain(
        "students",
        "student",
        ("students", "enrollment", "student_records"),
        "student_name",
        _person,
        {
            "major": ("Physics", "History", "Biology", "Economics", "Art", "Computer Science"),
            "year_level": ("Freshman", "Sophomore", "Junior", "Senior"),
        },
        {
            "gpa": ("REAL", 2, 4),
            "credits": ("INTEGER", 0, 140),
            "age": ("INTEGER", 17, 30),
        },
    ),
    Domain(
        "flights",
        "flight",
        ("flights", "departures", "flight_log"),
        "flight_number",
        _code("AR"),
        {
            "origin": ("JFK", "LHR", "CDG", "NRT", "SYD", "GRU"),
            "airline": ("Skyway", "Aerolux", "BlueJet", "Polaris"),
        },
        {
            "duration_min": ("INTEGER", 45, 900),
            "passengers": ("INTEGER", 20, 400),
            "fare": ("REAL", 40, 1500),
        },
    ),
)


# --------------------------------------------------------------------------- SQL helpers


def quote(value: Any) -> str:
    """A SQL literal."""
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


def ident(name: str) -> str:
    return f"`{name}`"


def create_table(conn: sqlite3.Connection, payload: dict[str, Any]) -> None:
    table, columns = payload["table"], payload["columns"]
    spec = ", ".join(f"{ident(name)} {kind}" for name, kind in columns)
    conn.execute(f"CREATE TABLE {ident(table)} ({spec})")
    marks = ", ".join("?" for _ in columns)
    conn.executemany(f"INSERT INTO {ident(table)} VALUES ({marks})", payload["rows"])


def table_hash(conn: sqlite3.Connection, table: str, columns: list[str]) -> str:
    """An order-independent digest of a table's rows (AgentBench hashes sorted row digests)."""
    cols = ", ".join(ident(c) for c in columns)
    digests = sorted(
        hashlib.md5("\x1f".join(_canonical(v) for v in row).encode()).hexdigest()
        for row in conn.execute(f"SELECT {cols} FROM {ident(table)}")
    )
    return hashlib.md5(",".join(digests).encode()).hexdigest()


def _canonical(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return repr(round(value, 6))
    return str(value)


def _authorizer(action: int, arg1: Any, arg2: Any, dbname: Any, source: Any) -> int:
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):  # also VACUUM INTO
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA and str(arg1).lower() not in _ALLOWED_PRAGMAS:
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and str(arg2).lower() in _DENIED_FUNCTIONS:
        return sqlite3.SQLITE_DENY
    if dbname not in (None, "main", "temp"):
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


class GuardedDatabase:
    """One task's in-memory database with the agent's statements confined and time-capped."""

    def __init__(self, payload: dict[str, Any], timeout_s: float) -> None:
        # Reset and step may run on different threads of an EnvPool actor (never at once).
        self.conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        if hasattr(self.conn, "enable_load_extension"):  # absent when Python lacks it
            self.conn.enable_load_extension(False)
        create_table(self.conn, payload)
        self.conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
        self.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1_000_000)
        self.timeout_s = timeout_s
        self._deadline = math.inf
        self.conn.set_progress_handler(self._over_time, 1000)
        self.conn.set_authorizer(_authorizer)

    def _over_time(self) -> int:
        return int(time.monotonic() > self._deadline)

    def execute(self, sql: str, max_chars: int) -> str:
        """AgentBench's observation: ``str(cursor.fetchall())`` or the error, truncated."""
        self._deadline = time.monotonic() + self.timeout_s
        try:
            cursor = self.conn.execute(sql)
            text = _rows_text(cursor, max_chars)
        except sqlite3.OperationalError as e:
            text = (
                f"query interrupted: it ran longer than {self.timeout_s:g} s"
                if str(e) == "interrupted"
                else str(e)
            )
        except (sqlite3.Error, ValueError, OverflowError) as e:
            text = str(e)
        finally:
            self._deadline = math.inf
        return text[:max_chars] + TRUNCATED if len(text) > max_chars else text

    def fetch(self, sql: str, max_rows: int) -> list[tuple]:
        """Up to ``max_rows`` rows of one statement, under the same guards; raises
        ``sqlite3.Error`` (``"interrupted"`` past the time limit) like ``execute`` sees it."""
        self._deadline = time.monotonic() + self.timeout_s
        try:
            return self.conn.execute(sql).fetchmany(max_rows)
        finally:
            self._deadline = math.inf

    def table_hash(self, table: str, columns: list[str]) -> str | None:
        try:
            return table_hash(self.conn, table, columns)
        except sqlite3.Error:  # the agent dropped or broke the table
            return None

    def close(self) -> None:
        self.conn.close()


def _rows_text(cursor: sqlite3.Cursor, max_chars: int) -> str:
    """``str(rows)``, fetching only as many rows as the truncated text can show."""
    rows: list[tuple] = []
    length = 2  # the brackets
    while length <= max_chars + 1:
        batch = cursor.fetchmany(64)
        if not batch:
            break
        for row in batch:
            length += len(repr(row)) + (2 if rows else 0)
            rows.append(row)
    return str(rows)


# --------------------------------------------------------------------------- parsing, scoring


def parse_action(text: str) -> tuple[str, str] | None:
    """``("operation", sql)`` or ``("answer", raw answer)``; None when the reply matches neither.

    AgentBench's rules: an ``Action: Operation`` needs a ```sql block (newlines joined into one
    line); anything else must carry ``Final Answer:``.
    """
    action = re.search(r"Action:\s*(\w+)", text)
    if action and action.group(1) == "Operation":
        sql = re.search(r"```sql\s*\n([\s\S]*?)\n?```", text)
        if not sql or not sql.group(1).strip():
            return None
        return "operation", sql.group(1).strip().replace("\n", " ")
    answer = re.search(r"Final Answer:(.*)", text)
    if not answer:
        return None
    return "answer", answer.group(1).strip()


def parse_answer(raw: str) -> list[Any]:
    """``'["a", 3]'`` -> ``["a", 3]``; rows of tuples are flattened; anything else is one item."""
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return [raw]
    if not isinstance(value, list | tuple | set):
        return [value]
    items: list[Any] = []
    for item in value:
        items.extend(item if isinstance(item, list | tuple) else [item])
    return items


def _split_numbers(items: list[Any]) -> tuple[list[float], set[str]]:
    numbers: list[float] = []
    strings: set[str] = set()
    for item in items:
        text = str(item).strip().strip("'\"").strip()
        if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", text):
            text = text.replace(",", "")
        try:
            number = float(text)
        except ValueError:
            strings.add(text)
            continue
        if math.isfinite(number):
            numbers.append(number)
        else:
            strings.add(text)
    return sorted(set(numbers)), strings


def answers_match(given: list[Any], expected: list[Any]) -> bool:
    """Equal as sets: strings exactly (quotes and spaces stripped), numbers within 0.01."""
    given_numbers, given_strings = _split_numbers(given)
    expected_numbers, expected_strings = _split_numbers(expected)
    if given_strings != expected_strings or len(given_numbers) != len(expected_numbers):
        return False
    return all(
        math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-2)
        for a, b in zip(given_numbers, expected_numbers, strict=True)
    )


# --------------------------------------------------------------------------- task generation


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


class _Ctx:
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


def _q_count_cat(c: _Ctx) -> Draft:
    column, value = c.cat()
    return Draft(
        f"How many {c.d.entity} have the {column} '{value}'?",
        f"SELECT COUNT(*) FROM {c.t} WHERE {ident(column)} = {quote(value)};",
        "SELECT",
        "counting",
        f"I need to count the rows whose {column} is '{value}'.",
    )


def _q_count_num(c: _Ctx) -> Draft:
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


def _q_aggregate(c: _Ctx) -> Draft:
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


def _q_rank(c: _Ctx) -> Draft:
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


def _q_filter(c: _Ctx) -> Draft:
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


def _q_lookup(c: _Ctx) -> Draft:
    key = c.rng.choice(c.col(c.d.key))
    column = c.rng.choice(c.d.columns[1:])
    return Draft(
        f"What is the {column} of the {c.d.singular} whose {c.d.key} is '{key}'?",
        f"SELECT {ident(column)} FROM {c.t} WHERE {ident(c.d.key)} = {quote(key)};",
        "SELECT",
        "other",
        f"I need to look up the {column} of the row whose {c.d.key} is '{key}'.",
    )


def _q_group(c: _Ctx) -> Draft:
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


def _q_insert(c: _Ctx) -> Draft:
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


def _q_update(c: _Ctx) -> Draft:
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


def _q_delete(c: _Ctx) -> Draft:
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
TEMPLATES: tuple[Callable[[_Ctx], Draft], ...] = (
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
    draft = rng.choice(TEMPLATES)(_Ctx(rng, domain, table, rows))
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
def _all_tasks(config_json: str) -> dict[str, list[TaskSpec]]:
    config = DBConfig.model_validate_json(config_json)
    return generate_split_tasks(
        DBEnv.name,
        config,
        lambda rng: make_payload(rng, config.min_rows, config.max_rows),
        problem_text,
    )


# --------------------------------------------------------------------------- the env


class DBEnv(Env):
    name: ClassVar[str] = "db"
    version: ClassVar[str] = "1"
    config_cls: ClassVar[type[FamilyConfig]] = DBConfig

    config: DBConfig

    def __init__(self, config: DBConfig | None = None) -> None:
        super().__init__(config)
        self._db: GuardedDatabase | None = None
        self._task: TaskSpec | None = None
        self._rounds = 0
        self._done = True

    def tasks(self, split: str) -> list[TaskSpec]:
        generated = _all_tasks(self.config.model_dump_json(exclude={"task_files"}))
        return split_tasks(generated, split) + file_tasks(self.name, self.config.task_files, split)

    def prompt(self, task: TaskSpec) -> list[Message]:
        messages: list[Message] = [
            {"role": "user", "content": INSTRUCTION},
            {"role": "assistant", "content": "Ok.", "loss": False},
        ]
        if self.config.one_shot:
            messages += [dict(m) for m in DEMO]  # type: ignore[misc]
        messages.append({"role": "user", "content": problem_text(task.payload)})
        return messages

    def reset(self, task: TaskSpec) -> list[Message]:
        self.close()
        self._db = GuardedDatabase(task.payload, self.config.query_timeout_s)
        self._task = task
        self._rounds = 0
        self._done = False
        return self.prompt(task)

    @staticmethod
    def action_problem(reply: str) -> str | None:
        if parse_action(reply) is None:
            return "no `Action: Operation` with a ```sql block and no `Final Answer:`"
        return None

    def step(self, action: str) -> StepResult:
        if self._done or self._db is None or self._task is None:
            return no_episode_result()
        self._rounds += 1
        parsed = parse_action(action)
        if parsed is None:
            return self._finish(
                Status.AGENT_INVALID_ACTION, 0.0, None, {"error": "no valid action"}
            )
        kind, content = parsed
        if kind == "answer":
            correct = self._score(content)
            return self._finish(
                Status.COMPLETED, float(correct), None, {"answer": content, "correct": correct}
            )
        observation = self._db.execute(content, self.config.max_observation_chars)
        if self._rounds >= self.config.max_rounds:
            return self._finish(Status.TASK_LIMIT_REACHED, 0.0, observation, {})
        return StepResult(observation=observation, done=False)

    def _score(self, raw_answer: str) -> bool:
        payload = self._task.payload
        if payload["type"] in MODIFYING:
            columns = [name for name, _ in payload["columns"]]
            return self._db.table_hash(payload["table"], columns) == payload["answer_hash"]
        return answers_match(parse_answer(raw_answer), payload["answer"])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
        self._db = None
        self._done = True

    def expert_actions(self, task: TaskSpec) -> list[str]:
        payload = task.payload
        operation = f"{payload['thought']}\nAction: Operation\n```sql\n{payload['sql']}\n```"
        if payload["type"] in MODIFYING:
            answer = (
                f"The {payload['type']} statement has been executed, so the table is updated.\n"
                'Action: Answer\nFinal Answer: ["none"]'
            )
        else:
            answer = (
                "The query result gives the answer.\n"
                f"Action: Answer\nFinal Answer: {json.dumps(payload['answer'])}"
            )
        return [operation, answer]


# --------------------------------------------------------------------------- teacher-written tasks
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
) -> TaskSpec | Rejected:
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
        payload = _proposal_payload(require_object(proposal))
        _verify_proposal(payload, config)
        task = TaskSpec(id=task_id, family=DBEnv.name, split="train", seed=0, payload=payload)
        check_replay(DBEnv(config), task)
    except ProposalError as e:
        return e.rejected
    return task


def _proposal_payload(proposal: dict[str, Any]) -> dict[str, Any]:
    table = require_text(proposal, "table", 64)
    if not _IDENT.fullmatch(table):
        raise ProposalError(BAD_FIELD, f"table name {table!r} is not a plain identifier")
    columns = _proposal_columns(require(proposal, "columns", list))
    rows = _proposal_rows(require(proposal, "rows", list), len(columns))
    kind = require_text(proposal, "type", 16).upper()
    if kind not in ("SELECT", *MODIFYING):
        raise ProposalError(BAD_FIELD, f"type {kind!r} is not SELECT, INSERT, UPDATE or DELETE")
    solution = require_text(proposal, "solution")
    statement = _statement_kind(solution)
    if statement != kind:
        raise ProposalError(
            BAD_FIELD, f"type is {kind} but the solution's statement is {statement}"
        )
    return {
        "table": table,
        "columns": columns,
        "rows": rows,
        "question": require_text(proposal, "question", 1000),
        "sql": solution,
        "type": kind,
        "category": "generated",
        "thought": optional_text(proposal, "thought", "I can answer this with one SQL statement."),
        "check": require(proposal, "check", dict),
    }


def _proposal_columns(columns: list[Any]) -> list[list[str]]:
    if not 1 <= len(columns) <= MAX_PROPOSAL_COLUMNS:
        raise ProposalError(BAD_FIELD, f"'columns' must have 1 to {MAX_PROPOSAL_COLUMNS} entries")
    out: list[list[str]] = []
    for column in columns:
        ok = (
            isinstance(column, list)
            and len(column) == 2
            and all(isinstance(c, str) for c in column)
        )
        if not ok or not _IDENT.fullmatch(column[0]) or column[1].upper() not in SQL_TYPES:
            raise ProposalError(
                BAD_FIELD, f"column {column!r} is not [identifier, INTEGER|REAL|TEXT]"
            )
        out.append([column[0], column[1].upper()])
    names = [name.lower() for name, _ in out]
    if len(set(names)) != len(names):
        raise ProposalError(BAD_FIELD, "two columns share a name")
    return out


def _proposal_rows(rows: list[Any], width: int) -> list[list[Any]]:
    low, high = PROPOSAL_ROWS
    if not low <= len(rows) <= high:
        raise ProposalError(BAD_FIELD, f"'rows' must have {low} to {high} rows (has {len(rows)})")
    for i, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != width:
            raise ProposalError(BAD_FIELD, f"row {i} is not a list of {width} values")
        for value in row:
            if not _plain_value(value):
                raise ProposalError(
                    BAD_FIELD, f"row {i}: {value!r} is not a number, a short string or null"
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
        raise ProposalError(SETUP_ERROR, f"the table cannot be built: {e}") from None
    try:
        columns = [name for name, _ in payload["columns"]]
        before = db.table_hash(payload["table"], columns)
        if payload["type"] == "SELECT":
            answer = _verify_select(db, payload)
            if db.table_hash(payload["table"], columns) != before:
                raise ProposalError(BAD_FIELD, "a SELECT solution changed the table")
            payload["answer"] = answer
        else:
            payload["answer_hash"] = _verify_modification(db, payload, columns, before)
    finally:
        db.close()


def _verify_select(db: GuardedDatabase, payload: dict[str, Any]) -> list[Any]:
    expected = _check_values(payload["check"], "answer")
    answer = _run(db, payload["sql"], SOLUTION_ERROR, "solution")
    if not answer or any(v is None for v in answer):
        raise ProposalError(EMPTY_ANSWER, f"the solution returns {answer!r}")
    if not answers_match(answer, expected):
        raise ProposalError(
            CHECK_FAILED, f"the solution returns {answer!r}, the check expects {expected!r}"
        )
    return answer


def _verify_modification(
    db: GuardedDatabase, payload: dict[str, Any], columns: list[str], before: str | None
) -> str:
    check = payload["check"]
    check_sql = require_text(check, "sql")
    if _statement_kind(check_sql) != "SELECT":
        raise ProposalError(BAD_FIELD, "the check's 'sql' must be a SELECT")
    expected = _check_values(check, "expected")
    if answers_match(_run(db, check_sql, CHECK_ERROR, "check"), expected):
        raise ProposalError(
            CHECK_PASSES_WITHOUT_SOLUTION,
            f"the check returns {expected!r} on the untouched table already",
        )
    _run(db, payload["sql"], SOLUTION_ERROR, "solution")
    after = db.table_hash(payload["table"], columns)
    if after is None:
        raise ProposalError(SOLUTION_ERROR, "the solution drops or breaks the table")
    if after == before:
        raise ProposalError(NO_OP_SOLUTION, "the solution leaves the table unchanged")
    got = _run(db, check_sql, CHECK_ERROR, "check")
    if not answers_match(got, expected):
        raise ProposalError(
            CHECK_FAILED, f"after the solution the check returns {got!r}, not {expected!r}"
        )
    return after


def _check_values(check: dict[str, Any], name: str) -> list[Any]:
    values = require(check, name, list)
    if not values:
        raise ProposalError(BAD_FIELD, f"the check's {name!r} is empty")
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
        raise ProposalError(code, f"the {what} fails: {detail}") from None
    values = [value for row in rows for value in row]
    if len(values) > MAX_ANSWER_ITEMS:
        raise ProposalError(BAD_FIELD, f"the {what} returns more than {MAX_ANSWER_ITEMS} values")
    return values
