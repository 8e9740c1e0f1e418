"""Instruction generation (agentray instruct): a teacher over real HTTP proposes tasks, the real
envs verify them (SQLite, bubblewrap), every rejection keeps its reason, and collection plays
the kept tasks."""

from __future__ import annotations

import json
import uuid

import openai
import pytest
import yaml
from typer.testing import CliRunner

from agentray import storage
from agentray.cli import app
from agentray.envs.db import DBConfig, DBEnv
from agentray.envs.db import proposals as db_proposals
from agentray.envs.os import OSConfig, OSEnv
from agentray.envs.os import proposals as os_proposals
from agentray.envs.proposals import (
    BAD_FIELD,
    CHECK_FAILED,
    CHECK_PASSES_WITHOUT_SOLUTION,
    DUPLICATE,
    EMPTY_ANSWER,
    MALFORMED_JSON,
    MALFORMED_REPLY,
    MISSING_FIELD,
    NEAR_DUPLICATE,
    NO_OP_SOLUTION,
    NOT_AN_OBJECT,
    SETUP_ERROR,
    SOLUTION_ERROR,
    SURPLUS,
    Rejected,
    replay_expert,
)
from agentray.envs.registry import make_env
from agentray.envs.sandbox import bwrap_available
from agentray.envs.task_files import file_tasks
from agentray.instruct.config import InstructConfig
from agentray.instruct.dedup import NearDuplicateIndex, rouge_l, words
from agentray.instruct.generate import run_instruct
from agentray.instruct.prompts import parse_reply
from agentray.model.chat import chat_messages
from agentray.policies.registry import ExpertConfig
from agentray.testing.expert_endpoint import ExpertEndpoint
from agentray.testing.instruct_teacher import FAMILY_FAULTS, FAULT_REASONS
from agentray.types import Status, TaskSpec

FAMILIES = ["db", "os"] if bwrap_available() else ["db"]
SMALL = {"db": {"n_train": 10, "n_test": 4}, "os": {"n_train": 6, "n_test": 2}}
needs_bwrap = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap cannot run here")

# ------------------------------------------------------------------ DB verification


def _db_proposal(**changes) -> dict:
    proposal = {
        "table": "pets",
        "columns": [["name", "TEXT"], ["kind", "TEXT"], ["age", "INTEGER"]],
        "rows": [["Rex", "dog", 3], ["Tom", "cat", 5], ["Kiki", "bird", 1], ["Fido", "dog", 7]],
        "question": "What is the name of the oldest dog?",
        "type": "SELECT",
        "thought": "Sort the dogs by age and take the first.",
        "solution": "SELECT name FROM pets WHERE kind = 'dog' ORDER BY age DESC LIMIT 1;",
        "check": {"answer": ["Fido"]},
    }
    return {**proposal, **changes}


def _update(**changes) -> dict:
    update = _db_proposal(
        question="Cats are a year older now: add 1 to the age of every cat.",
        type="UPDATE",
        solution="UPDATE pets SET age = age + 1 WHERE kind = 'cat';",
        check={"sql": "SELECT age FROM pets WHERE name = 'Tom';", "expected": [6]},
    )
    return {**update, **changes}


def _code(verdict: TaskSpec | Rejected) -> str:
    return verdict.code if isinstance(verdict, Rejected) else "kept"


def test_db_keeps_proposals_that_verify_in_sqlite_with_the_solutions_own_gold():
    task = db_proposals.task_from_proposal(_db_proposal(), "db_gen_0")
    assert isinstance(task, TaskSpec) and task.payload["answer"] == ["Fido"]
    changed = db_proposals.task_from_proposal(_update(), "db_gen_1")
    assert isinstance(changed, TaskSpec) and changed.payload["answer_hash"]
    for kept in (task, changed):  # the expert replays the verified solution in the env
        result = replay_expert(DBEnv(), kept)
        assert result.status == Status.COMPLETED and result.reward == 1.0
    # a CTE is a SELECT; a numeric check matches within the answer tolerance
    cte = "WITH d AS (SELECT age FROM pets WHERE kind = 'dog') SELECT AVG(age) FROM d;"
    average = _db_proposal(question="Average dog age?", solution=cte, check={"answer": [5.0]})
    assert _code(db_proposals.task_from_proposal(average, "x")) == "kept"


@pytest.mark.parametrize(
    "proposal, code, detail",
    [
        (["not", "a", "dict"], NOT_AN_OBJECT, "JSON object"),
        ({k: v for k, v in _db_proposal().items() if k != "solution"}, MISSING_FIELD, "solution"),
        (_db_proposal(columns=[["name", "BLOB"]]), BAD_FIELD, "INTEGER|REAL|TEXT"),
        (_db_proposal(rows=[["Rex", "dog"]] * 4), BAD_FIELD, "row 0"),
        (_db_proposal(table="pets; DROP"), BAD_FIELD, "identifier"),
        (_db_proposal(type="DELETE"), BAD_FIELD, "statement is SELECT"),
        (_db_proposal(solution="SELECT nme FROM pets;"), SOLUTION_ERROR, "no such column"),
        (_db_proposal(solution="SELECT 1; SELECT 2;"), SOLUTION_ERROR, "one statement"),
        (_db_proposal(solution="ATTACH 'x.db' AS x;"), BAD_FIELD, "statement is ATTACH"),
        (_db_proposal(check={"answer": ["Rex"]}), CHECK_FAILED, "expects ['Rex']"),
        (_db_proposal(solution="SELECT name FROM pets WHERE age > 99;"), EMPTY_ANSWER, "[]"),
        (_update(check={"sql": "SELECT COUNT(*) FROM pets;", "expected": [4]}),
         CHECK_PASSES_WITHOUT_SOLUTION, "untouched table"),
        (_update(solution="UPDATE pets SET age = age WHERE kind = 'cat';"), NO_OP_SOLUTION, ""),
        (_update(check={"sql": "SELECT age FROM pets WHERE name = 'Tom';", "expected": [9]}),
         CHECK_FAILED, "not [9]"),
        (_update(check={"sql": "DELETE FROM pets;", "expected": []}), BAD_FIELD, "SELECT"),
    ],
)  # fmt: skip
def test_db_rejects_each_bad_proposal_with_its_reason(proposal, code, detail):
    verdict = db_proposals.task_from_proposal(proposal, "db_gen_0")
    assert isinstance(verdict, Rejected) and verdict.code == code, verdict
    assert detail in verdict.detail


def test_db_sql_runs_under_the_envs_guards():
    # the authorizer denies extensions and file access to teacher SQL too
    extension = _db_proposal(solution="SELECT load_extension('/tmp/x.so');")
    verdict = db_proposals.task_from_proposal(extension, "x")
    assert _code(verdict) == SOLUTION_ERROR and "not authorized" in verdict.detail
    slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT MAX(x) FROM c;"
    verdict = db_proposals.task_from_proposal(
        _db_proposal(solution=slow), "x", DBConfig(query_timeout_s=0.2)
    )
    assert isinstance(verdict, Rejected) and "longer than 0.2 s" in verdict.detail


# ------------------------------------------------------------------ OS verification


def _os_proposal(**changes) -> dict:
    proposal = {
        "description": "How many lines of /root/logs/app.log contain ERROR?",
        "files": {"logs/app.log": "INFO ok\nERROR disk\nINFO ok\nERROR net\n"},
        "thought": "grep -c counts matching lines.",
        "solution": "grep -c ERROR /root/logs/app.log",
        "check": {"answer": "2"},
    }
    return {**proposal, **changes}


def _os_change(**changes) -> dict:
    change = _os_proposal(
        description="Delete every .tmp file in /root/work and keep the others.",
        files={},
        setup="mkdir work && echo a > work/a.tmp && echo b > work/b.txt",
        solution="rm /root/work/*.tmp",
        check={"script": "[ ! -e /root/work/a.tmp ] && [ -f /root/work/b.txt ]"},
    )
    return {**change, **changes}


@needs_bwrap
def test_os_keeps_proposals_that_verify_in_the_sandbox():
    question = os_proposals.task_from_proposal(_os_proposal(), "os_gen_0")
    assert isinstance(question, TaskSpec) and question.payload["evaluation"] == {"match": "2"}
    change = os_proposals.task_from_proposal(_os_change(), "os_gen_1")
    assert isinstance(change, TaskSpec)
    # the setup ran in the sandbox; what it left became the task's files
    assert change.payload["files"] == {"work/a.tmp": "a\n", "work/b.txt": "b\n"}
    for kept in (question, change):
        result = replay_expert(OSEnv(), kept)
        assert result.status == Status.COMPLETED and result.reward == 1.0


@needs_bwrap
@pytest.mark.parametrize(
    "proposal, code, detail",
    [
        (_os_proposal(check={"answer": "3"}), CHECK_FAILED, "prints '2'"),
        (_os_proposal(check={"answer": "2\n3"}), BAD_FIELD, "one non-empty line"),
        (_os_proposal(check={"answer": "2", "script": "true"}), BAD_FIELD, "exactly one"),
        (_os_proposal(solution="grep -c ERROR /root/logs/missing.log"), SOLUTION_ERROR, "exits 2"),
        (_os_proposal(files={"../escape.txt": "x"}), BAD_FIELD, "relative path"),
        (_os_proposal(files={"/etc/passwd": "x"}), BAD_FIELD, "relative path"),
        (_os_change(check={"script": "[ -f /root/work/b.txt ]"}),
         CHECK_PASSES_WITHOUT_SOLUTION, "untouched"),
        (_os_change(check={"script": "[ -e /root/work/c.tmp ]"}), CHECK_FAILED, "exits 1"),
        (_os_change(setup="mkdir work && touch work/run.sh && chmod +x work/run.sh"),
         SETUP_ERROR, "executable"),
        (_os_change(setup="exit 4"), SETUP_ERROR, "exits 4"),
        (_os_change(setup="mkdir work && ln -s /etc/passwd work/p"), SETUP_ERROR, "not a plain"),
    ],
)  # fmt: skip
def test_os_rejects_each_bad_proposal_with_its_reason(proposal, code, detail):
    verdict = os_proposals.task_from_proposal(proposal, "os_gen_0")
    assert isinstance(verdict, Rejected) and verdict.code == code, verdict
    assert detail in verdict.detail


@needs_bwrap
def test_os_solution_past_the_command_time_limit_is_rejected():
    slow = _os_proposal(solution="sleep 30; echo 2")
    verdict = os_proposals.task_from_proposal(slow, "os_gen_0", OSConfig(command_timeout_s=0.5))
    assert isinstance(verdict, Rejected) and verdict.code == SOLUTION_ERROR
    assert "longer than 0.5 s" in verdict.detail


# ------------------------------------------------------------------ dedup, parsing, files


def test_near_duplicates_by_rouge_l():
    a = words("How many employees have the department 'Sales'?")
    assert a == ["how", "many", "employees", "have", "the", "department", "sales"]
    assert rouge_l(a, words("How many employees have the department 'Finance'?")) == 6 / 7
    index = NearDuplicateIndex(threshold=0.7)
    index.add("db_1", "How many employees have the department 'Sales'?")
    index.add("db_2", "What is the average salary of the staff in Denver?")
    assert index.closest('how many EMPLOYEES have the department  "sales"') == ("db_1", 1.0)
    assert index.closest("How many employees have the department 'Finance'?") == ("db_1", 6 / 7)
    assert index.closest("How many products have the category 'Toys'?") is None  # 4/7 < 0.7
    assert NearDuplicateIndex(0.9).closest("anything") is None


def test_replies_split_into_one_proposal_per_block():
    reply = 'Sure.\n```json\n{"a": 1}\n```\ntext\n```json\n{"b": \n```\n```json\n[{"c": 3}, 4]\n```'
    blocks = parse_reply(reply)
    assert [(b.value, b.error and b.error.code) for b in blocks] == [
        ({"a": 1}, None),
        (None, MALFORMED_JSON),
        ({"c": 3}, None),
        (4, None),
    ]
    assert blocks[0].raw == '{"a": 1}'
    assert [b.value for b in parse_reply('[{"x": 1}]')] == [{"x": 1}]
    assert [b.error.code for b in parse_reply("I cannot help with that.")] == [MALFORMED_REPLY]
    cut = parse_reply('```json\n{"x": [1, 2')  # a reply cut at max_tokens
    assert [b.error.code for b in cut] == [MALFORMED_JSON]


def test_task_files_join_the_train_split_and_bad_files_name_the_line(tmp_path):
    kept = db_proposals.task_from_proposal(_db_proposal(), "db_gen_0")
    good = tmp_path / "db.jsonl"
    good.write_text(kept.model_dump_json() + "\n")
    env = DBEnv(DBConfig(n_train=3, n_test=1, task_files=[str(good)]))
    assert [t.id for t in env.tasks("train")] == ["db_0", "db_1", "db_2", "db_gen_0"]
    assert [t.id for t in env.tasks("test")] == ["db_3"]
    cases = {
        "not json\n": "db.jsonl:1: not a TaskSpec",
        kept.model_copy(update={"id": "db_7"}).model_dump_json(): "form of the procedural",
        kept.model_copy(update={"family": "os"}).model_dump_json(): "'os' task",
        kept.model_dump_json() + "\n" + kept.model_dump_json(): "db.jsonl:2: id 'db_gen_0' repeats",
    }
    for text, message in cases.items():
        good.write_text(text)
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            DBEnv(DBConfig(n_train=1, task_files=[str(good)])).tasks("train")
    with pytest.raises(ValueError, match="task file"):
        file_tasks("db", [str(tmp_path / "missing.jsonl")], "train")
    with pytest.raises(ValueError, match="task_files"):  # only families that read them
        make_env("kg", {"task_files": [str(good)]})


def test_task_files_may_be_uris(s3_bucket):
    kept = db_proposals.task_from_proposal(_db_proposal(), "db_gen_0")
    location = storage.join(s3_bucket, "tasks", "db.jsonl")
    storage.write_text(location, kept.model_dump_json() + "\n")
    config = DBConfig(n_train=1, n_test=1, task_files=[location])
    assert [t.id for t in DBEnv(config).tasks("train")] == ["db_0", "db_gen_0"]
    more = kept.model_copy(update={"id": "db_gen_12"})
    storage.write_text(location, kept.model_dump_json() + "\n" + more.model_dump_json())
    assert [t.id for t in DBEnv(config).tasks("train")][-1] == "db_gen_12"  # read again
    with pytest.raises(ValueError, match="task file .*missing.jsonl"):
        file_tasks("db", [storage.join(s3_bucket, "missing.jsonl")], "train")


# ------------------------------------------------------------------ end to end over HTTP


def _rows(location: str) -> list[dict]:
    return [json.loads(line) for line in storage.read_text(location).split("\n") if line.strip()]


@pytest.fixture(scope="module", params=["local", "s3"])
def generated(request, tmp_path_factory):
    """One instruct run against the stand-in teacher behind the latency/error-injecting
    endpoint: every fault once per family, 3 tasks wanted per family; the run dir on a
    local disk or in a bucket of the session's S3 server."""
    if request.param == "local":
        run_dir = str(tmp_path_factory.mktemp("instruct-run"))
    else:
        s3 = request.getfixturevalue("s3_server")
        run_dir = storage.join(s3.create_bucket(f"instruct-{uuid.uuid4().hex[:8]}"), "run")
    cwd = tmp_path_factory.mktemp("cwd")
    endpoint = ExpertEndpoint(
        families=["db"],
        family_configs=SMALL,
        latency_ms=10,
        error_rate=0.2,
        retry_after_s=0.05,
        instruct_faults=list(FAULT_REASONS),
        seed=1,
    ).start()
    teacher = {
        "model": "stand-in",
        "base_url": endpoint.base_url,
        "max_retries": 8,
        "retry_backoff_s": 0.02,
    }
    cfg = InstructConfig(
        families=FAMILIES,
        teacher=teacher,
        tasks_per_family=3,
        proposals_per_request=3,
        derive_share=0.5,
        max_requests_per_family=10,
    )
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(cwd)  # a URI taken for a relative path would land here
            summary = run_instruct(cfg, run_dir, progress=False, envs=SMALL)
    finally:
        endpoint.stop()
    assert list(cwd.iterdir()) == []
    return run_dir, cfg, summary, endpoint


def test_teacher_proposals_are_verified_and_every_bad_one_rejected_for_its_fault(generated):
    run_dir, cfg, summary, endpoint = generated
    out = storage.join(run_dir, "instruct")
    # every output is in the run dir (on a local disk or in the bucket), nothing else
    task_files = [storage.join(out, "tasks", f"{family}.jsonl") for family in FAMILIES]
    outputs = ["manifest.json", "rejected.jsonl", "summary.json"]
    assert storage.list_files(out) == [storage.join(out, f) for f in outputs] + task_files
    rejected = _rows(storage.join(out, "rejected.jsonl"))
    log = endpoint.state.teacher.log
    assert endpoint.stats()["errors_injected"] > 0  # the client retried through them
    for family in FAMILIES:
        counts = summary["families"][family]
        kept = file_tasks(family, [storage.join(out, "tasks", f"{family}.jsonl")], "train")
        assert summary["envs"][family]["task_files"] == [
            storage.join(out, "tasks", f"{family}.jsonl")
        ]
        sent = [e for e in log if e["family"] == family]
        mine = [r for r in rejected if r["family"] == family]
        # counts add up: every proposal sent is kept or rejected, none lost or doubled
        assert counts["proposals"] == len(sent) + counts["requests_failed"]
        assert counts["proposals"] == counts["kept"] + counts["rejected"] == len(kept) + len(mine)
        assert sum(counts["rejected_by_reason"].values()) == counts["rejected"]
        assert len(kept) == 3 and [t.id for t in kept] == [f"{family}_gen_{i}" for i in range(3)]
        # every injected fault was sent and got exactly its reason
        assert sorted(e["fault"] for e in sent if e["fault"]) == sorted(FAMILY_FAULTS[family])
        by_raw = {r["proposal"]: r for r in mine}
        instruction = "question" if family == "db" else "description"
        kept_instructions = {t.payload[instruction] for t in kept}
        for entry in sent:
            row = by_raw.get(entry["raw"])
            if entry["fault"] is not None:
                assert row is not None and row["reason"] == FAULT_REASONS[entry["fault"]], row
            elif row is not None:  # a good proposal may only repeat a task or come too late
                assert row["reason"] in (DUPLICATE, NEAR_DUPLICATE, SURPLUS), row
            else:
                assert json.loads(entry["raw"])[instruction] in kept_instructions
        assert all(r["detail"] and r["seeds"] for r in mine)
        # kept tasks: split train, verified gold, the expert wins them in a fresh env
        env = make_env(family, SMALL[family])
        for task in kept:
            assert task.split == "train" and task.payload["origin"]["teacher"] == "stand-in"
            assert replay_expert(env, task).reward == 1.0
    assert {t["mode"] for t in log if t["family"] == "db"} == {"self_instruct", "derive"}
    manifest = storage.read_json(storage.join(out, "manifest.json"))
    assert manifest["stage"] == "instruct" and manifest["counts"]["kept"] == 3 * len(FAMILIES)


def test_the_cli_resumes_and_the_endpoint_replays_generated_tasks(generated, tmp_path):
    run_dir, cfg, summary, _ = generated
    task_files = {f: summary["envs"][f]["task_files"] for f in FAMILIES}
    families = {f: {**SMALL[f], "task_files": task_files[f]} for f in FAMILIES}
    with ExpertEndpoint(families=FAMILIES, family_configs=families, seed=2) as endpoint:
        # the CLI: one more task per family, continuing the earlier run's files and ids
        config = {
            "run_dir": run_dir,
            "envs": families,
            "collect": {"families": FAMILIES},
            "instruct": {
                **cfg.model_dump(mode="json", exclude={"teacher"}),
                "tasks_per_family": 4,
                "teacher": {"model": "stand-in"},
            },
        }
        path = tmp_path / "instruct.yaml"
        path.write_text(yaml.safe_dump(config))
        result = CliRunner().invoke(app, ["instruct", str(path), "--base-url", endpoint.base_url])
        assert result.exit_code == 0, result.output
        resumed = json.loads(result.stdout[result.stdout.index("{") :])
        outputs = storage.join(storage.absolute(run_dir), "instruct")
        assert f"agentray instruct: outputs in {outputs}" in result.stderr
        for family in FAMILIES:
            counts = resumed["families"][family]
            assert counts["resumed"] == 3 and counts["tasks_in_file"] == 3 + counts["kept"]
            ids = [t.id for t in file_tasks(family, task_files[family], "train")]
            assert ids[:3] == [f"{family}_gen_{i}" for i in range(3)] and len(set(ids)) == len(ids)
        # the expert endpoint replays the generated tasks for the stock openai client
        client = openai.OpenAI(base_url=endpoint.base_url, api_key="EMPTY", max_retries=0)
        for family in FAMILIES:
            env = make_env(family, families[family])
            generated_tasks = [t for t in env.tasks("train") if "_gen_" in t.id]
            for task in generated_tasks[:3]:
                messages = env.reset(task)
                step = None
                while step is None or not step.done:
                    reply = client.chat.completions.create(
                        model="expert", messages=chat_messages(messages)
                    )
                    text = reply.choices[0].message.content
                    step = env.step(text)
                    messages += [{"role": "assistant", "content": text}]
                    if step.observation is not None:
                        messages += [{"role": "user", "content": step.observation}]
                assert step.reward == 1.0, (task.id, step)
            env.close()


@pytest.mark.slow
def test_collect_plays_generated_tasks_with_the_expert_teacher(generated, ray_local, tmp_path):
    from agentray.collect.config import CollectConfig, RolloutConfig
    from agentray.collect.run import run_collect
    from agentray.collect.sink import read_trajectories

    _, _, summary, _ = generated
    families = {f: {"n_train": 2, "n_test": 1, **summary["envs"][f]} for f in FAMILIES}
    cfg = CollectConfig(
        families=FAMILIES,
        policy=ExpertConfig(),
        rollout=RolloutConfig(max_in_flight=8, num_env_pools=1, envs_per_pool=8, metrics=False),
    )
    result = run_collect(cfg, tmp_path, progress=False, envs=families)
    rows = read_trajectories(tmp_path / "collect" / "trajectories")
    by_id = {row.id: row for row in rows}
    for family in FAMILIES:
        generated_ids = {t.id for t in make_env(family, families[family]).tasks("train")} - {
            f"{family}_0",
            f"{family}_1",
        }
        assert len(generated_ids) >= 3 and generated_ids <= set(by_id)
        for task_id in generated_ids:
            assert by_id[task_id].reward == 1.0 and by_id[task_id].status == "completed"
    expected = sum(len(make_env(f, families[f]).tasks("train")) for f in FAMILIES)
    assert result["written_total"] == len(rows) == expected


def test_a_teacher_that_mostly_fails_ends_the_stage_loudly(tmp_path):
    """The teacher answers the preflight, then every request fails: instruct exits 1 with
    one FAILED line naming the count and the most common error, and the manifest says so."""
    config = {
        "run_dir": str(tmp_path / "run"),
        "envs": SMALL,
        "instruct": {
            "families": ["db"],
            "tasks_per_family": 2,
            "max_requests_per_family": 4,
            "teacher": {"model": "stand-in", "max_retries": 0, "retry_backoff_s": 0.01},
        },
    }
    path = tmp_path / "instruct.yaml"
    path.write_text(yaml.safe_dump(config))
    # the preflight's list-models and one tiny request pass; all 4 task requests fail
    with ExpertEndpoint(
        families=["db"], family_configs=SMALL, outage_after=1, outage_requests=1000
    ) as endpoint:
        result = CliRunner().invoke(app, ["instruct", str(path), "--base-url", endpoint.base_url])
    assert result.exit_code == 1, result.output
    [failed] = [line for line in result.stderr.splitlines() if "instruct FAILED" in line]
    assert "4 of 4 teacher requests failed (more than max_error_fraction 0.5)" in failed
    assert "most common error (4x)" in failed and "503" in failed
    out = tmp_path / "run" / "instruct"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["failure"]["errors"] == 4
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert len(rejected) == 4 and {r["reason"] for r in rejected} == {"teacher_error"}
