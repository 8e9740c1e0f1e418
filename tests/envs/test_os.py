"""The OS family and its bubblewrap sandbox: expert, scoring, statuses and isolation."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import time
from pathlib import Path

import pytest

from agentray.envs import sandbox as sandbox_module
from agentray.envs.os import OSConfig, OSEnv
from agentray.envs.os.actions import format_output, parse_action
from agentray.envs.play import play_expert
from agentray.envs.sandbox import Sandbox, SandboxUnavailable, bwrap_available
from agentray.envs.scratch import scratch_mounts
from agentray.types import Status

pytestmark = pytest.mark.skipif(not bwrap_available(), reason="bubblewrap cannot run here")

SAMPLE = OSConfig(n_train=30, n_test=10, seed=5)


@pytest.fixture
def scratch():
    """A scratch folder the sandbox's unprivileged uid can reach (pytest's tmp_path lies
    under a folder only root may search)."""
    root = Path(tempfile.mkdtemp(prefix="agentray-test-"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _bash(command: str) -> str:
    return f"Think: run it.\n\nAct: bash\n\n```bash\n{command}\n```"


def _first(env: OSEnv, evaluation: str):
    return next(t for t in env.tasks("train") if evaluation in t.payload["evaluation"])


def test_expert_solves_every_sampled_task():
    env = OSEnv(SAMPLE)
    tasks = env.tasks("train") + env.tasks("test")
    kinds = {t.payload["kind"] for t in tasks}
    assert len(tasks) == 40 and len(kinds) >= 8
    assert {next(iter(t.payload["evaluation"])) for t in tasks} == {"match", "check"}
    for task in tasks:
        _, result = play_expert(env, task)
        assert result.done and result.status == Status.COMPLETED, (task.id, result)
        assert result.reward == 1.0, (task.id, task.payload["description"], result)
    env.close()


def test_generation_is_deterministic_with_disjoint_unique_splits():
    a, b = OSEnv(SAMPLE), OSEnv(SAMPLE)
    train, test = a.tasks("train"), a.tasks("test")
    assert [t.model_dump() for t in train + test] == [
        t.model_dump() for t in b.tasks("train") + b.tasks("test")
    ]
    assert [t.id for t in train + test] == [f"os_{i}" for i in range(40)]
    assert {t.split for t in test} == {"test"}
    problems = [a.prompt(t)[-1]["content"] for t in train + test]
    assert len(set(problems)) == len(problems)
    json.dumps([t.payload for t in train + test])
    other = OSEnv(OSConfig(n_train=30, n_test=10, seed=6)).tasks("train")
    assert [t.payload for t in other] != [t.payload for t in train]


def test_wrong_answer_and_unfinished_work_score_zero():
    env = OSEnv(SAMPLE)
    env.reset(_first(env, "match"))
    result = env.step("Think: a guess.\n\nAct: answer(definitely-wrong)")
    assert (result.done, result.status, result.reward) == (True, Status.COMPLETED, 0.0)

    env.reset(_first(env, "check"))  # finishing without doing the work fails the check
    result = env.step("Think: done.\n\nAct: finish")
    assert (result.done, result.status, result.reward) == (True, Status.COMPLETED, 0.0)
    env.close()


def test_malformed_actions_end_with_invalid_action():
    env = OSEnv(SAMPLE)
    task = env.tasks("train")[0]
    for bad in ("I would run ls.", "Think: hmm.\n\nAct: bash\n\nls -la", "Act: answer"):
        env.reset(task)
        result = env.step(bad)
        assert result.done and result.status == Status.AGENT_INVALID_ACTION
        assert result.reward == 0.0
    env.close()


def test_round_limit_and_state_persisting_across_commands():
    env = OSEnv(OSConfig(n_train=2, n_test=1, max_rounds=3))
    env.reset(env.tasks("train")[0])
    assert env.step(_bash("echo kept > note.txt")).observation == "The output of the OS is empty."
    result = env.step(_bash("cat /root/note.txt"))
    assert result.observation == "The output of the OS:\n\nkept\n" and not result.done
    result = env.step(_bash("echo 3"))
    assert result.done and result.status == Status.TASK_LIMIT_REACHED and result.reward == 0.0
    env.close()


def test_close_removes_the_scratch_dir_and_reset_needs_bwrap(monkeypatch):
    env = OSEnv(SAMPLE)
    env.reset(env.tasks("train")[0])
    root = env.scratch_root
    assert root is not None and any(root.rglob("*"))
    assert root in scratch_mounts()  # the size-limited tmpfs of the episode
    env.close()
    assert not root.exists() and root not in scratch_mounts()
    assert env.step(_bash("ls")).status == Status.TASK_ERROR

    monkeypatch.setattr(sandbox_module, "bwrap_available", lambda: False)
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        env.reset(env.tasks("train")[0])


def test_long_output_is_truncated_like_agentbench():
    env = OSEnv(SAMPLE)
    env.reset(env.tasks("train")[0])
    result = env.step(_bash("seq 1 2000"))
    assert result.observation.endswith("\n[truncated because the output is too long]")
    assert result.observation.startswith("The output of the OS:\n\n1\n2\n3\n")
    body = result.observation.removeprefix("The output of the OS:\n\n")
    assert len(body) == 780 + len("\n[truncated because the output is too long]")
    env.close()


def test_sandbox_cannot_read_host_files(tmp_path, scratch):
    secret = tmp_path / "host" / "secret.txt"
    secret.parent.mkdir()
    secret.write_text("TOP-SECRET-VALUE\n")
    box = Sandbox(scratch, timeout_s=5)
    result = box.run(f"cat {secret}; ls /etc/shadow {Path.home()}/.bashrc")
    assert "TOP-SECRET-VALUE" not in result.output
    assert "No such file" in result.output and result.exit_code != 0
    result = box.run("touch /usr/evil && echo wrote")
    assert "wrote" not in result.output and not Path("/usr/evil").exists()
    assert box.run("echo mine > f && cat f").output == "mine\n"
    assert (scratch / "f").read_text() == "mine\n"  # the scratch dir is the one shared place


def test_sandbox_has_no_network(scratch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    try:
        box = Sandbox(scratch, timeout_s=10)
        probe = f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), timeout=2)'"
        result = box.run(f"{probe} && echo CONNECTED")
        assert "CONNECTED" not in result.output and "Connection refused" in result.output
        with pytest.raises(TimeoutError):
            listener.accept()
        interfaces = box.run("tail -n +3 /proc/net/dev | cut -d: -f1").output.split()
        assert interfaces == ["lo"]
    finally:
        listener.close()


def test_sandbox_enforces_timeout_and_kills_the_process_tree(scratch):
    box = Sandbox(scratch, timeout_s=1)
    start = time.monotonic()
    result = box.run("(sleep 2; touch orphan_marker) & sleep 30")
    assert result.timed_out and result.exit_code != 0
    assert time.monotonic() - start < 4
    result = box.run("(sleep 2; touch child_marker) & sleep 137 & echo started")
    assert result.output == "started\n" and not result.timed_out
    time.sleep(2.5)
    assert not (scratch / "orphan_marker").exists()
    assert not (scratch / "child_marker").exists()
    assert not _host_processes_with("sleep\x00137")


def test_timed_out_command_is_reported_to_the_agent():
    env = OSEnv(OSConfig(n_train=2, n_test=1, command_timeout_s=0.5))
    env.reset(env.tasks("train")[0])
    result = env.step(_bash("echo before; sleep 20"))
    assert result.observation.startswith("The output of the OS:\n\nbefore\n")
    assert "killed after 0.5 seconds" in result.observation and not result.done
    env.close()


def test_action_parsing_follows_agentbench():
    assert parse_action(_bash("ls")) == ("bash", "ls")
    assert parse_action("Think: x\n\nAct: answer(42)") == ("answer", "42")
    assert parse_action("Think: x\n\nAct: finish") == ("finish", None)
    assert parse_action("Act: bash\n```bash\nls\n```\nAct: answer(7)") == ("answer", "7")
    assert parse_action("nothing") is None
    assert format_output("", 800, False, 5) == "The output of the OS is empty."


def _host_processes_with(needle: str) -> list[int]:
    hits = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle.encode() in (entry / "cmdline").read_bytes():
                    hits.append(int(entry.name))
            except OSError:
                continue
    return hits
