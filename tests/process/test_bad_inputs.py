"""Bad inputs are set aside, not fatal (issue 14): an unreadable shard is named in one line
(or quarantined), a malformed JSONL line goes to rejected.jsonl with its file and line, an
unknown family is never trained on, the working directory is never probed, ShareGPT system
turns become the system prompt."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError

from agentray import storage
from agentray.collect.sink import ParquetSink
from agentray.envs.play import expert_trajectory
from agentray.envs.registry import make_env
from agentray.model.chat import encode_chat
from agentray.process.agentinstruct import (
    classify_agentinstruct,
    classify_trajectory,
    load_agentinstruct,
)
from agentray.process.config import ProcessConfig
from agentray.process.general import classify_general
from agentray.process.inputs import BadInput, check_shards, read_records
from agentray.process.tokenize import (
    IGNORE_INDEX,
    ConversationTokenizer,
    encode_pieces,
    load_tokenizer,
)
from agentray.records import TRAJECTORY_SCHEMA
from agentray.sharegpt import iter_sharegpt


def _turn(speaker: str, value: str, loss: bool | None = None) -> dict:
    return {"from": speaker, "loss": loss, "value": value}


DB_TURNS = [
    _turn("human", "I will ask you a question, then you should help me operate a MySQL ..."),
    _turn("gpt", "Ok.", False),
    _turn("human", "What is the total population? Table: city (name, population)"),
    _turn("gpt", "Sum it.\nAction: Operation\n```sql\nSELECT SUM(population) FROM city\n```", True),
    _turn("human", "[(4200,)]"),
    _turn("gpt", "Done.\nAction: Answer\nFinal Answer: [4200]", True),
]
OS_TURNS = [
    _turn("human", "You are an assistant that will act like a person. Use Act: bash, ..."),
    _turn("gpt", "Think: I will follow.\n\nAct: bash\n\n```bash\nls\n```", False),
    _turn("human", "Now, my problem is: how many files are in /etc?"),
    _turn("gpt", "Think: count them.\n\nAct: bash\n\n```bash\nls /etc | wc -l\n```", True),
    _turn("human", "The output of the OS:\n\n219"),
    _turn("gpt", "Think: that is the answer.\n\nAct: answer(219)", True),
]
SYSTEM = "You are a pirate. Answer like one. SYSTEM-MARKER"


def _record(record_id: str, turns: list[dict]) -> str:
    return json.dumps({"id": record_id, "conversations": turns})


def _general(i: int, system: bool) -> dict:
    turns = [{"from": "human", "value": f"question {i}?"}, {"from": "gpt", "value": f"answer {i}"}]
    head = [{"from": "system", "value": f"{SYSTEM} {i}"}] if system else []
    return {"id": f"g{i}", "conversations": head + turns}


def _write_shards(folder: str, n_shards: int, per_shard: int) -> list[list[str]]:
    """Real expert db trajectories in ``n_shards`` shards; the ids of each shard."""
    env = make_env("db")
    rows = [expert_trajectory(env, task) for task in env.tasks("train")[: n_shards * per_shard]]
    env.close()
    sink = ParquetSink(folder, flush_every=per_shard)
    for row in rows:
        sink.add(row)
    sink.flush()
    shards = storage.list_files(folder, ".parquet")
    return [pq.read_table(Path(s)).column("id").to_pylist() for s in shards]


def _truncate(shard: str) -> None:
    data = storage.read_bytes(shard)
    storage.write_bytes(shard, data[: len(data) // 2])


# --------------------------------------------------------------------------- without Ray


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_truncated_shard_is_found_by_its_footer(where, tmp_path, request):
    base = str(tmp_path) if where == "local" else request.getfixturevalue("s3_bucket")
    folder = storage.join(base, "trajectories")
    _write_shards(str(tmp_path / "made"), 3, 2)
    for shard in storage.list_files(str(tmp_path / "made"), ".parquet"):
        storage.write_bytes(storage.join(folder, storage.name(shard)), storage.read_bytes(shard))
    shards = storage.list_files(folder, ".parquet")
    _truncate(shards[1])
    other = storage.join(folder, "part-other.parquet")  # a parquet file of something else
    storage.write_bytes(other, _parquet_bytes({"x": [1]}))

    good, bad = check_shards([*shards, other], TRAJECTORY_SCHEMA.names)
    assert good == [shards[0], shards[2]]
    assert [b.file for b in bad] == [shards[1], other]
    assert bad[0].line is None and bad[0].reason.startswith("unreadable parquet: ")
    assert bad[1].reason.startswith("not a trajectory shard: no column id, task")


def _parquet_bytes(columns: dict) -> bytes:
    import io

    import pyarrow as pa

    out = io.BytesIO()
    pq.write_table(pa.table(columns), out)
    return out.getvalue()


def test_malformed_lines_are_named_by_file_and_line(tmp_path):
    lines = [
        _record("os_0", OS_TURNS),
        '{"id": "os_1", "conversations": [{"from": "human"',  # cut short
        "",
        "[1, 2]",
        b"\xff\xfe not text".decode("latin-1"),
        _record("os_2", OS_TURNS),
    ]
    path = tmp_path / "agent.jsonl"
    path.write_bytes("\n".join(lines).encode("latin-1"))
    items = list(read_records(str(path)))
    assert [i[0] for i in items if not isinstance(i, BadInput)] == [1, 6]
    bad = [i for i in items if isinstance(i, BadInput)]
    assert [(b.line, b.reason.split(":")[0]) for b in bad] == [
        (2, "malformed JSON"),
        (4, "malformed line"),
        (5, "malformed line"),
    ]
    assert all(b.file == str(path) for b in bad)

    rows, bad = load_agentinstruct([str(tmp_path)])
    assert [(r["file"], r["line"]) for r in rows] == [(str(path), 1), (str(path), 6)]
    assert bad[0].row("agent") == {
        "source": "agent",
        "file": str(path),
        "line": 2,
        "reason": bad[0].reason,
    }
    # a JSON array that does not parse is one bad file, not a line
    (tmp_path / "broken.json").write_text('[{"id": "os_3", "conversations": []}, {"id"')
    _, bad = load_agentinstruct([str(tmp_path / "broken.json")])
    assert len(bad) == 1 and bad[0].line is None


def test_an_unknown_family_is_set_aside_or_mapped():
    unknown = classify_agentinstruct({"id": "zzz_1", "conversations": DB_TURNS}, ProcessConfig())
    assert unknown["family"] == "zzz"
    assert unknown["reject_reason"].startswith("unknown family 'zzz'")
    mapped = classify_agentinstruct(
        {"id": "zzz_1", "conversations": DB_TURNS}, ProcessConfig(family_aliases={"zzz": "db"})
    )
    assert mapped["family"] == "db" and mapped["reject_reason"] == ""
    # the mapped record is checked in its family's action format
    as_os = classify_agentinstruct(
        {"id": "zzz_1", "conversations": DB_TURNS}, ProcessConfig(family_aliases={"zzz": "os"})
    )
    assert as_os["reject_reason"].startswith("invalid action format")
    # the same for a collected trajectory whose task no env knows
    env = make_env("db")
    row = expert_trajectory(env, env.tasks("train")[0]).to_row() | {"task": "zzz"}
    env.close()
    assert classify_trajectory(row, ProcessConfig())["reject_reason"].startswith("unknown family")
    with pytest.raises(ValidationError, match="unknown families"):
        ProcessConfig(family_aliases={"zzz": "no-such-env"})


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def test_a_system_turn_becomes_the_system_prompt(tokenizer):
    row = classify_general(_general(0, system=True), 0)
    assert row["reject_reason"] == ""
    turns = json.loads(row["conversations"])
    assert turns[0] == {"from": "system", "loss": None, "value": f"{SYSTEM} 0"}
    [example] = encode_pieces(tokenizer, turns, 4096)
    chat = [
        {"role": "system", "content": f"{SYSTEM} 0"},
        {"role": "user", "content": "question 0?"},
        {"role": "assistant", "content": "answer 0"},
    ]
    expected = tokenizer.apply_chat_template(chat, tokenize=True, return_dict=False)
    assert example["input_ids"] == list(expected)
    # the prompt is what serving encodes for the same messages (agentray.model.chat)
    prompt = encode_chat(tokenizer, chat[:2])
    assert example["input_ids"][: len(prompt)] == prompt
    targets = tokenizer.decode([t for t in example["labels"] if t != IGNORE_INDEX])
    assert "answer 0" in targets and "pirate" not in targets


def test_every_split_piece_keeps_the_system_prompt(tokenizer):
    turns = [{"from": "system", "loss": None, "value": SYSTEM}]
    for i in range(6):
        turns += [_turn("human", f"question {i} " * 20), _turn("gpt", f"answer {i} " * 20, True)]
    whole = encode_pieces(tokenizer, turns, 100_000)[0]["num_tokens"]
    pieces = encode_pieces(tokenizer, turns, whole // 3, too_long="split")
    assert len(pieces) > 2
    for piece in pieces:
        assert "SYSTEM-MARKER" in tokenizer.decode(piece["input_ids"])


def test_a_template_without_a_system_role_gets_it_in_the_first_turn(tiny_model_dir, tmp_path):
    template = tmp_path / "no-system.jinja"
    template.write_text(
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('no system role') }}"
        "{% elif m['role'] == 'user' %}{{ bos_token + '[INST] ' + m['content'] + ' [/INST]' }}"
        "{% else %}{{ ' ' + m['content'] + ' ' + eos_token }}{% endif %}{% endfor %}"
    )
    stage = ConversationTokenizer(tiny_model_dir, 4096, chat_template=str(template))
    turns = json.loads(classify_general(_general(1, system=True), 1)["conversations"])
    batch = {"id": ["g1"], "source": ["general"], "family": ["general"]}
    out = stage(batch | {"conversations": [json.dumps(turns)]})
    assert out["reject_reason"] == [""]
    text = stage.tokenizer.decode(out["input_ids"][0])
    assert f"[INST] {SYSTEM} 1\n\nquestion 1? [/INST]" in text


def test_the_bundled_sharegpt_system_turns_never_decide_the_verdict():
    """The 41 bundled conversations that open with a system turn are judged as they would
    be without it, and the kept ones carry it as their first turn."""
    opened, kept = 0, 0
    for index, record in enumerate(iter_sharegpt()):
        turns = record.get("conversations") or []
        if not turns or turns[0].get("from") != "system":
            continue
        opened += 1
        with_system = classify_general(record, index)
        without = classify_general(record | {"conversations": turns[1:]}, index)
        assert bool(with_system["reject_reason"]) == bool(without["reject_reason"]), record["id"]
        if not with_system["reject_reason"]:
            kept += 1
            first = json.loads(with_system["conversations"])[0]
            assert first == {"from": "system", "loss": None, "value": turns[0]["value"]}
    assert opened == 41 and kept > 0


# ------------------------------------------------------------------------- the stage


_WATCHED: list[str] = []  # a folder no file event may touch while the stage runs
_TOUCHED: list[str] = []


def _audit(event: str, args: tuple) -> None:
    """Records a file opened under the watched folder, or a folder below it listed (the
    import system may list the working directory itself: it is on sys.path)."""
    if not _WATCHED or event not in ("open", "os.listdir", "os.scandir"):
        return
    target = os.fsdecode(args[0]) if args and isinstance(args[0], str | bytes) else None
    if target is None or not os.path.exists(target):
        return
    path = os.path.abspath(target)
    if path.startswith(_WATCHED[0] + os.sep):
        _TOUCHED.append(f"{event} {path}")


sys.addaudithook(_audit)


@pytest.fixture(scope="module")
def bad_inputs_run(tmp_path_factory, tiny_model_dir, ray_local):
    """The stage over a truncated shard, an AgentInstruct file with a malformed line and
    unknown and aliased families, general data with system turns and a malformed line, run
    from a working directory full of JSON files that must not be read."""
    from agentray.process.run import run_process

    root = tmp_path_factory.mktemp("bad-inputs")
    trajectories = str(root / "collect" / "trajectories")
    ids = _write_shards(trajectories, 3, 3)
    shards = storage.list_files(trajectories, ".parquet")
    _truncate(shards[2])
    public = root / "public" / "agent.jsonl"
    public.parent.mkdir()
    public.write_text(
        "\n".join(
            [
                _record("os_0", OS_TURNS),
                '{"id": "os_1", "conversations": [',
                _record("zzz_1", DB_TURNS),
                _record("yyy_2", DB_TURNS),
            ]
        )
    )
    general = root / "general.jsonl"
    records = [json.dumps(_general(i, system=i < 3)) for i in range(10)]
    general.write_text("\n".join([*records[:5], "{not json", *records[5:]]))
    cwd = root / "cwd"
    (cwd / "many").mkdir(parents=True)
    (cwd / "bad.json").write_text('{"id": "x", ')
    for i in range(300):
        (cwd / "many" / f"f{i}.jsonl").write_text('{"x": 1}\n')

    cfg = ProcessConfig(
        model=tiny_model_dir,
        agentinstruct=[str(public)],
        general_data=str(general),
        quarantine_bad_shards=True,
        family_aliases={"yyy": "db"},
        eta=0.5,
        balance="upsample_agent",
        max_seq_len=1024,
    )
    here = os.getcwd()
    os.chdir(cwd)
    _WATCHED.append(str(cwd))
    try:
        stats = run_process(cfg, str(root), progress=False)
    finally:
        _WATCHED.clear()
        os.chdir(here)
    out = root / "process"
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    train = pq.read_table(out / "train").to_pylist()
    return {
        "root": root,
        "stats": stats,
        "ids": ids,
        "shards": shards,
        "public": str(public),
        "general": str(general),
        "rejected": rejected,
        "train": train,
    }


def test_a_quarantined_shard_is_set_aside_and_the_rest_proceeds(bad_inputs_run):
    run = bad_inputs_run
    truncated = run["shards"][2]
    [row] = [r for r in run["rejected"] if r.get("file") == truncated]
    assert row == {"source": "agent", "file": truncated, "reason": row["reason"]}
    assert row["reason"].startswith("unreadable parquet: ")
    assert run["stats"]["unreadable_files"] == [truncated]
    assert run["stats"]["agent_read_by_origin"]["collect"] == 6
    trained = {r["id"].split("@")[0] for r in run["train"] if r["source"] == "agent"}
    assert set(run["ids"][0] + run["ids"][1]) <= trained
    assert not set(run["ids"][2]) & trained


def test_a_malformed_line_is_set_aside_with_its_file_and_line(bad_inputs_run):
    run = bad_inputs_run
    lines = {(r["source"], r.get("file"), r.get("line")): r for r in run["rejected"]}
    agent_line = lines[("agent", run["public"], 2)]
    assert agent_line["reason"].startswith("malformed JSON") and "id" not in agent_line
    assert lines[("general", run["general"], 6)]["reason"].startswith("malformed JSON")
    trained = {r["id"].split("@")[0] for r in run["train"]}
    assert {"os_0", "sharegpt_g4", "sharegpt_g5"} <= trained  # the lines around them


def test_an_unknown_family_is_never_trained_on(bad_inputs_run):
    run = bad_inputs_run
    [zzz] = [r for r in run["rejected"] if r.get("id") == "zzz_1"]
    assert zzz["family"] == "zzz" and zzz["reason"].startswith("unknown family 'zzz'")
    assert (zzz["file"], zzz["line"]) == (run["public"], 3)
    families = {r["family"] for r in run["train"]}
    assert "zzz" not in families and "yyy" not in families
    assert {r["family"] for r in run["train"] if r["id"].startswith("yyy_2")} == {"db"}


def test_the_working_directory_is_never_read(bad_inputs_run):
    assert bad_inputs_run["stats"]["agent_read_by_origin"]["agentinstruct"] == 3
    assert _TOUCHED == []


def test_system_turns_reach_the_training_set_as_system_prompts(bad_inputs_run, tokenizer):
    run = bad_inputs_run
    general = {r["id"]: r for r in run["train"] if r["source"] == "general"}
    assert {f"sharegpt_g{i}" for i in range(10)} <= set(general)
    for i in range(3):
        text = tokenizer.decode(general[f"sharegpt_g{i}"]["input_ids"])
        assert f"<<SYS>>\n{SYSTEM} {i}\n<</SYS>>" in text
    assert "<<SYS>>" not in tokenizer.decode(general["sharegpt_g3"]["input_ids"])


def test_a_dataset_name_that_cannot_load_offline_is_named_with_the_reason(monkeypatch, tmp_path):
    """``process.agentinstruct`` may name a hub dataset; offline and not in the cache, the
    error names it and says the hub is off, instead of a file-not-found for a path."""
    from agentray.process.agentinstruct import load_agentinstruct

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError) as err:
        load_agentinstruct(["THUDM/AgentInstruct"])
    message = str(err.value)
    assert "AgentInstruct data 'THUDM/AgentInstruct' is no file or folder" in message
    assert "HF_HUB_OFFLINE=1: only the local datasets cache is read" in message
    missing = tmp_path / "nowhere.jsonl"  # a path is still a path
    with pytest.raises(FileNotFoundError, match=f"AgentInstruct data not found: {missing}"):
        load_agentinstruct([str(missing)])
