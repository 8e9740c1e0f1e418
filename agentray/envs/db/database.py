"""The task's table in a guarded in-memory SQLite database (authorizer, timeout)."""

from __future__ import annotations

import hashlib
import math
import sqlite3
import time
from typing import Any

TRUNCATED = "[TRUNCATED]"


# Read-only schema introspection is the only PRAGMA the agent may run.
_ALLOWED_PRAGMAS = frozenset(
    {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo"}
)


_DENIED_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit"})


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
