"""The DB family: generation, the expert, scoring, statuses and the SQL guards."""

from __future__ import annotations

import json
import time

from agentray.envs.db import DBConfig, DBEnv
from agentray.envs.db.score import answers_match, parse_action, parse_answer
from agentray.envs.play import play_expert
from agentray.types import Status

SAMPLE = DBConfig(n_train=30, n_test=10, seed=3)


def _op(sql: str) -> str:
    return f"Let me run this.\nAction: Operation\n```sql\n{sql}\n```"


def _answer(value: str) -> str:
    return f"Done.\nAction: Answer\nFinal Answer: {value}"


def _first(env: DBEnv, kind: str) -> object:
    modifying = ("INSERT", "UPDATE", "DELETE")
    return next(
        t for t in env.tasks("train") if (t.payload["type"] in modifying) == (kind == "modify")
    )


def test_expert_solves_every_sampled_task():
    env = DBEnv(SAMPLE)
    tasks = env.tasks("train") + env.tasks("test")
    assert len(tasks) == 40
    assert {t.payload["type"] for t in tasks} >= {"SELECT", "INSERT", "UPDATE", "DELETE"}
    for task in tasks:
        _, result = play_expert(env, task)
        assert result.done and result.status == Status.COMPLETED, (task.id, result)
        assert result.reward == 1.0, (task.id, task.payload["question"], result)
    env.close()


def test_generation_is_deterministic_with_disjoint_unique_splits():
    a, b = DBEnv(SAMPLE), DBEnv(SAMPLE)
    train, test = a.tasks("train"), a.tasks("test")
    assert [t.model_dump() for t in train + test] == [
        t.model_dump() for t in b.tasks("train") + b.tasks("test")
    ]
    assert [t.id for t in train] == [f"db_{i}" for i in range(30)]
    assert [t.id for t in test] == [f"db_{i}" for i in range(30, 40)]
    assert {t.split for t in train} == {"train"} and {t.split for t in test} == {"test"}
    problems = [a.prompt(t)[-1]["content"] for t in train + test]
    assert len(set(problems)) == len(problems)
    json.dumps([t.payload for t in train + test])  # payloads cross parquet / Ray as JSON
    other = DBEnv(DBConfig(n_train=30, n_test=10, seed=4)).tasks("train")
    assert [t.payload for t in other] != [t.payload for t in train]
    # growing one split leaves the other split's tasks as they were
    bigger = DBEnv(DBConfig(n_train=30, n_test=15, seed=3))
    assert [t.payload for t in bigger.tasks("train")] == [t.payload for t in train]
    assert [t.payload for t in bigger.tasks("test")[:10]] == [t.payload for t in test]


def test_wrong_answers_complete_with_zero_reward():
    env = DBEnv(SAMPLE)
    select = _first(env, "select")
    env.reset(select)
    env.step(env.expert_actions(select)[0])
    result = env.step(_answer('["certainly not this"]'))
    assert (result.done, result.status, result.reward) == (True, Status.COMPLETED, 0.0)

    modify = _first(env, "modify")
    env.reset(modify)  # answering without modifying leaves the table hash unchanged
    result = env.step(_answer('["none"]'))
    assert (result.done, result.status, result.reward) == (True, Status.COMPLETED, 0.0)


def test_malformed_actions_end_with_invalid_action():
    env = DBEnv(SAMPLE)
    task = env.tasks("train")[0]
    for bad in ("I think the answer is 3.", "Action: Operation\nSELECT 1;", ""):
        env.reset(task)
        result = env.step(bad)
        assert result.done and result.status == Status.AGENT_INVALID_ACTION
        assert result.reward == 0.0


def test_round_limit_gives_task_limit_reached():
    env = DBEnv(DBConfig(n_train=2, n_test=1, max_rounds=3))
    env.reset(env.tasks("train")[0])
    assert not env.step(_op("SELECT 1;")).done
    assert not env.step(_op("SELECT 2;")).done
    result = env.step(_op("SELECT 3;"))
    assert result.done and result.status == Status.TASK_LIMIT_REACHED and result.reward == 0.0
    assert env.step(_answer("[3]")).status == Status.TASK_ERROR  # the episode is over


def test_observations_are_row_reprs_and_sql_errors_continue():
    env = DBEnv(SAMPLE)
    task = env.tasks("train")[0]
    env.reset(task)
    table = task.payload["table"]
    result = env.step(_op(f"SELECT COUNT(*) FROM `{table}`;"))
    assert result.observation == f"[({len(task.payload['rows'])},)]" and not result.done
    result = env.step(_op("SELECT * FROM no_such_table;"))
    assert "no such table" in result.observation and not result.done
    result = env.step(
        _op(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n LIMIT 500) SELECT i FROM n;"
        )
    )
    assert result.observation.endswith("[TRUNCATED]")
    assert len(result.observation) == 800 + len("[TRUNCATED]")
    assert result.observation.startswith("[(1,), (2,), (3,)")


def test_attach_pragma_and_extensions_are_denied(tmp_path):
    env = DBEnv(SAMPLE)
    task = env.tasks("train")[0]
    env.reset(task)
    target = tmp_path / "escape.db"
    attempts = [
        f"ATTACH DATABASE '{target}' AS other;",
        f"VACUUM INTO '{target}';",
        "PRAGMA writable_schema = 1;",
        "PRAGMA journal_mode = WAL;",
        "SELECT load_extension('/usr/lib/x86_64-linux-gnu/libsqlite3.so');",
    ]
    for sql in attempts:
        result = env.step(_op(sql))
        assert not result.done
        denied = ("not authorized", "authorization denied", "no such function")
        assert any(d in result.observation for d in denied), (sql, result.observation)
    assert not target.exists()
    result = env.step(_op(f"PRAGMA table_info(`{task.payload['table']}`);"))
    assert task.payload["columns"][0][0] in result.observation  # schema introspection is fine


def test_runaway_query_is_interrupted():
    env = DBEnv(DBConfig(n_train=2, n_test=1, query_timeout_s=0.3))
    env.reset(env.tasks("train")[0])
    start = time.monotonic()
    result = env.step(
        _op("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n) SELECT max(i) FROM n;")
    )
    assert time.monotonic() - start < 3
    assert "interrupted" in result.observation and not result.done
    assert env.step(_op("SELECT 41 + 1;")).observation == "[(42,)]"  # still usable


def test_step_without_reset_is_a_task_error():
    result = DBEnv(SAMPLE).step(_op("SELECT 1;"))
    assert result.done and result.status == Status.TASK_ERROR


def test_answer_parsing_and_matching():
    assert parse_action(_op("SELECT a\nFROM t;")) == ("operation", "SELECT a FROM t;")
    assert parse_action(_answer('["x"]')) == ("answer", '["x"]')
    assert parse_answer('["Alice", "Bob"]') == ["Alice", "Bob"]
    assert parse_answer("[(3,), (4,)]") == [3, 4]
    assert parse_answer("not a list") == ["not a list"]
    assert answers_match(["Bob", "Alice"], ["Alice", "Bob"])
    assert answers_match(["3"], [3]) and answers_match(["3.0"], [3])
    assert answers_match([63333.33], [63333.333333333336])
    assert answers_match(["1,234"], [1234])
    assert not answers_match([3.5], [3.6])
    assert not answers_match(["Alice"], ["Alice", "Bob"])
    assert not answers_match(["alice"], ["Alice"])
