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

from agentray.envs.db.config import DBConfig
from agentray.envs.db.env import DBEnv

__all__ = ["DBConfig", "DBEnv"]
