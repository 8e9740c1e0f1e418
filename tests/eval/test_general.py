"""General suites against a stand-in model over real HTTP (the stock openai client): gold
answers score 100, wrong ones 0; HumanEval programs really run in the bubblewrap sandbox."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
import requests

from agentray import storage
from agentray.envs.sandbox import bwrap_available
from agentray.eval.general.config import GeneralConfig, HumanEvalConfig
from agentray.eval.general.gsm import extract_number
from agentray.eval.general.humaneval import FAILED, PASSED, TIMED_OUT, ProgramRunner
from agentray.eval.general.mmlu import DEMOS_PER_SUBJECT, MMLU, extract_letter
from agentray.eval.general.mtbench import parse_rating
from agentray.eval.general.results import parts_of
from agentray.eval.general.runner import run_general
from agentray.policies.registry import ExpertConfig, OpenAIConfig
from agentray.testing.benchmark_endpoint import BenchmarkEndpoint

N = 12
GENERAL = GeneralConfig(max_items=N, seed=3)
needs_bwrap = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap cannot run here")


@pytest.fixture(scope="module")
def endpoint():
    with BenchmarkEndpoint(GENERAL, judge_rating=7) as ep:
        yield ep


def requests_by_model(ep: BenchmarkEndpoint) -> dict[str, int]:
    return requests.get(ep.base_url.removesuffix("/v1") + "/stats", timeout=10).json()["requests"]


def served(ep: BenchmarkEndpoint, model: str) -> OpenAIConfig:
    return OpenAIConfig(model=model, base_url=ep.base_url, max_concurrency=8)


@needs_bwrap
def test_gold_answers_score_100_and_wrong_answers_0(endpoint, tmp_path):
    cfg = GENERAL.model_copy(update={"suites": ["mmlu", "humaneval", "gsm_symbolic"]})
    before = requests_by_model(endpoint)
    gold = run_general(cfg, served(endpoint, "gold"), tmp_path / "gold", progress=False)
    wrong = run_general(cfg, served(endpoint, "wrong"), tmp_path / "wrong", progress=False)

    assert gold["skipped"] == wrong["skipped"] == {}
    for suite, good_status, bad_status in (
        ("mmlu", "correct", "wrong"),
        ("humaneval", "passed", "failed"),
        ("gsm_symbolic", "correct", "wrong"),
    ):
        assert gold["tasks"][suite]["count"] == wrong["tasks"][suite]["count"] == N
        assert gold["tasks"][suite]["score"] == 100.0, gold["tasks"][suite]
        assert gold["tasks"][suite]["statuses"] == {good_status: N}
        assert wrong["tasks"][suite]["score"] == 0.0, wrong["tasks"][suite]
        assert wrong["tasks"][suite]["statuses"] == {bad_status: N}
        lines = (tmp_path / "gold" / f"{suite}.jsonl").read_text().splitlines()
        assert sorted(json.loads(line)["id"] for line in lines) == sorted(
            r["id"] for r in gold["results"][suite]
        )
    # every answer came over HTTP from the endpoint: one request per item and model
    after = requests_by_model(endpoint)
    for model in ("gold", "wrong"):
        assert after.get(model, 0) - before.get(model, 0) == 3 * N
    assert gold["policy_stats"]["completions"] == 3 * N
    mmlu_row = gold["results"]["mmlu"][0]
    assert mmlu_row["extracted"] == mmlu_row["gold"] and "Answer" not in mmlu_row["question"]


def test_mt_bench_is_skipped_without_a_judge_and_says_so(endpoint, tmp_path):
    before = requests_by_model(endpoint)
    cfg = GENERAL.model_copy(update={"suites": ["mt_bench"]})
    out = run_general(cfg, served(endpoint, "gold"), tmp_path, progress=False)
    assert out["tasks"] == {}
    assert "no judge configured" in out["skipped"]["mt_bench"]
    assert "eval.general.mt_bench.judge" in out["skipped"]["mt_bench"]
    assert requests_by_model(endpoint) == before  # nothing was asked


def test_mt_bench_is_scored_by_the_judge_endpoint(endpoint, tmp_path):
    cfg = GENERAL.model_copy(deep=True, update={"suites": ["mt_bench"]})
    cfg.mt_bench.judge = served(endpoint, "judge")
    cfg.mt_bench.max_items = 4
    before = requests_by_model(endpoint)
    out = run_general(cfg, served(endpoint, "gold"), tmp_path, progress=False)
    summary = out["tasks"]["mt_bench"]
    assert summary["score"] == 7.0 and summary["rated_turns"] == 8
    assert summary["statuses"] == {"rated": 4}
    after = requests_by_model(endpoint)
    assert after["gold"] - before.get("gold", 0) == 8  # two turns per question
    assert after["judge"] - before.get("judge", 0) == 8  # one judgment per turn
    row = out["results"]["mt_bench"][0]
    assert [t["rating"] for t in row["turns"]] == [7.0, 7.0]
    assert "[[7]]" in row["turns"][1]["judgment"]


def test_general_suites_are_skipped_for_the_expert_policy(tmp_path):
    out = run_general(GENERAL, ExpertConfig(), tmp_path, progress=False)
    assert out["tasks"] == {}
    assert set(out["skipped"]) == set(GENERAL.suites)
    assert all("expert policy" in reason for reason in out["skipped"].values())


def interrupt(results: str, lines: list[str]) -> None:
    """Leaves what an interrupted run leaves at ``results``: the first item's request
    failed, the next four were scored, the rest never finished."""
    failed = json.dumps({**json.loads(lines[0]), "status": "request_error", "score": 0.0})
    if storage.is_uri(results):  # written whole at its start, then one batch as a part
        storage.write_text(results, "\n".join([failed, *lines[1:3]]) + "\n")
        part = storage.join(parts_of(results), "000000.jsonl")
        storage.write_text(part, "\n".join(lines[3:5]) + "\n")
    else:  # appended to, and killed mid-write
        storage.write_text(results, "\n".join([failed, *lines[1:5]]) + "\n" + lines[5][:20])


def test_an_interrupted_run_resumes_without_asking_again(endpoint, run_root):
    cfg = GENERAL.model_copy(update={"suites": ["gsm_symbolic"]})
    out_dir = storage.join(run_root, "eval", "general")
    first = run_general(cfg, served(endpoint, "gold"), out_dir, progress=False)
    results = storage.join(out_dir, "gsm_symbolic.jsonl")
    interrupt(results, storage.read_text(results).splitlines())
    before = requests_by_model(endpoint)
    resumed = run_general(cfg, served(endpoint, "gold"), out_dir, fresh=False, progress=False)
    # 4 kept; the failed request and the 7 never finished are asked again
    assert requests_by_model(endpoint)["gold"] - before["gold"] == N - 4
    rows = [json.loads(line) for line in storage.read_text(results).splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(
        r["id"] for r in first["results"]["gsm_symbolic"]
    )
    assert [r["id"] for r in resumed["results"]["gsm_symbolic"]] == [
        r["id"] for r in first["results"]["gsm_symbolic"]
    ]
    assert resumed["tasks"]["gsm_symbolic"]["score"] == 100.0
    assert storage.list_files(out_dir) == [results]  # the parts became the one results file
    assert list(Path.cwd().iterdir()) == []


def test_mmlu_reads_the_packaged_questions_and_keeps_demonstrations_apart():
    suite = MMLU(GeneralConfig().mmlu, GeneralConfig(max_items=None))
    items = suite.load_items()
    subjects = {item["subject"] for item in items}
    assert len(subjects) == 57
    assert len(items) == 14042 - 57 * DEMOS_PER_SUBJECT
    set_aside = suite.set_aside()
    assert len(set_aside) == 2 and all("correct_answer" in r["reason"] for r in set_aside)
    demo_ids = {d["id"] for item in items for d in item["demos"]}
    assert len(demo_ids) == 57 * 5 and not demo_ids & {item["id"] for item in items}
    prompt = suite.messages(items[0])[0]["content"]
    assert prompt.count("\nAnswer:") == 6 and prompt.endswith("Answer:")
    assert all(d["subject"] == items[0]["subject"] for d in items[0]["demos"])
    zero_shot = MMLU(GeneralConfig().mmlu.model_copy(update={"n_shots": 0}), GeneralConfig())
    assert zero_shot.messages(zero_shot.items()[0])[0]["content"].count("Answer:") == 1


def test_answer_extraction():
    options = ["Paris", "Rome", "Madrid", "Berlin"]
    assert extract_letter("The answer is (C).", options) == "C"
    assert extract_letter("B", options) == "B"
    assert extract_letter("(D) Berlin, because ...", options) == "D"
    assert extract_letter("**Answer: A**", options) == "A"
    assert extract_letter("Rome", options) == "B"
    assert extract_letter("A good question; the answer is a bit unclear", options) is None
    assert extract_letter("I do not know", options) is None

    assert extract_number("3 + 4 = 7\nThe answer is 1,260.") == "1260"
    assert extract_number("so #### 42") == "42"
    assert extract_number("It costs $15, then $20 more: 35") == "35"
    assert extract_number("The answer is -3.5.") == "-3.5"
    assert extract_number("no idea") is None

    assert parse_rating("Good. Rating: [[8.5]]") == 8.5
    assert parse_rating("Rating: [3]") == 3.0
    assert parse_rating("Rating: 4") == 4.0
    assert parse_rating("Rating: [[11]]") is None
    assert parse_rating("no rating") is None


@pytest.fixture()
def host_listener():
    """A TCP server on the host's loopback: reachable from here, not from the sandbox."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    accepted: list[bool] = []

    def serve() -> None:
        server.settimeout(30)
        try:
            conn, _ = server.accept()
            accepted.append(True)
            conn.close()
        except OSError:
            pass

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], accepted
    server.close()


@needs_bwrap
def test_humaneval_programs_run_sandboxed_without_network_and_with_a_time_limit(host_listener):
    port, accepted = host_listener
    runner = ProgramRunner(HumanEvalConfig(timeout_s=2.0))
    assert runner.run("assert 1 + 1 == 2\n")["status"] == PASSED
    assert runner.run("assert 1 + 1 == 3\n")["status"] == FAILED

    reach_host = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
    blocked = runner.run(reach_host)
    assert blocked["status"] == FAILED and "ConnectionRefusedError" in blocked["error"]
    assert accepted == []  # and the host's server never saw it
    with socket.create_connection(("127.0.0.1", port), timeout=2):  # it is reachable from here
        pass

    internet = runner.run(
        "import urllib.request\nurllib.request.urlopen('http://1.1.1.1', timeout=2)\n"
    )
    assert internet["status"] == FAILED and "URLError" in internet["error"]

    forever = runner.run("while True:\n    pass\n")
    assert forever["status"] == TIMED_OUT and "2.0s" in forever["error"]
    forked = runner.run("import os, time\nif os.fork() == 0:\n    time.sleep(60)\nos.wait()\n")
    assert forked["status"] == TIMED_OUT
