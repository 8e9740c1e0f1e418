"""Process stage: filter reasons, general-data cleaning, loss masks, the eta mix, on Ray Data."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from agentray import storage
from agentray.collect.sink import ParquetSink
from agentray.envs.play import expert_trajectory
from agentray.envs.registry import make_env
from agentray.process.agentinstruct import classify_trajectory
from agentray.process.config import ProcessConfig
from agentray.process.general import classify_general
from agentray.process.mix import general_records_for
from agentray.process.tokenize import (
    IGNORE_INDEX,
    RecordRejected,
    TemplateError,
    check_template,
    encode_conversation,
    load_tokenizer,
)
from agentray.records import TRAJECTORY_SCHEMA, Trajectory

DEMO_AND_AGENT = [
    {"from": "human", "loss": None, "value": "You are an agent. Answer with Action: ..."},
    {"from": "gpt", "loss": False, "value": "OK. (a demonstration answer, never trained on)"},
    {"from": "human", "loss": None, "value": "How many rows are in the table?"},
    {
        "from": "gpt",
        "loss": True,
        "value": "Action: Operation\n```sql\nSELECT COUNT(*) FROM t;\n```",
    },
    {"from": "human", "loss": None, "value": "[(3,)]"},
    {"from": "gpt", "loss": True, "value": "Action: Answer\nFinal Answer: [3]"},
]


MIND2WEB_TURNS = [
    t | {"value": "Thought: the search box.\nAnswer: B\nAction: CLICK"} if t["loss"] else t
    for t in DEMO_AND_AGENT
]
OS_TURNS = [
    *DEMO_AND_AGENT[:3],
    {
        "from": "gpt",
        "loss": True,
        "value": "Think: count them.\n\nAct: bash\n\n```bash\nwc -l t\n```",
    },
    DEMO_AND_AGENT[4],
    {"from": "gpt", "loss": True, "value": "Think: done.\n\nAct: answer(3)"},
]
NO_SQL_BLOCK = [
    *DEMO_AND_AGENT[:3],
    {"from": "gpt", "loss": True, "value": "Action: Operation\nSELECT COUNT(*) FROM t;"},
    *DEMO_AND_AGENT[4:],
]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def _chat(turns):
    return [
        {"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]}
        for t in turns
    ]


def _template_ids(tokenizer, chat) -> list[int]:
    text = tokenizer.apply_chat_template(chat, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _labeled_runs(labels: list[int]) -> list[list[int]]:
    runs, current = [], []
    for label in labels:
        if label == IGNORE_INDEX:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(label)
    return runs + ([current] if current else [])


def test_loss_mask_covers_exactly_the_agent_turns(tokenizer):
    encoded = encode_conversation(tokenizer, DEMO_AND_AGENT, max_seq_len=4096)
    chat = _chat(DEMO_AND_AGENT)
    as_template = tokenizer.apply_chat_template(chat, tokenize=True)
    as_template = as_template["input_ids"] if hasattr(as_template, "keys") else as_template
    assert encoded["input_ids"] == list(as_template)
    assert encoded["input_ids"] == _template_ids(tokenizer, chat)

    runs = [tokenizer.decode(run) for run in _labeled_runs(encoded["labels"])]
    agent_turns = [t["value"] for t in DEMO_AND_AGENT if t["loss"] is True]
    assert len(runs) == len(agent_turns)  # the demonstration answer carries no label
    for decoded, value in zip(runs, agent_turns, strict=True):
        assert decoded.strip() == f"{value} {tokenizer.eos_token}"
    assert encoded["num_loss_tokens"] == sum(len(r) for r in _labeled_runs(encoded["labels"]))
    labeled = [i for i, label in enumerate(encoded["labels"]) if label != IGNORE_INDEX]
    assert all(encoded["labels"][i] == encoded["input_ids"][i] for i in labeled)


def test_truncation_keeps_whole_turns(tokenizer):
    full = encode_conversation(tokenizer, DEMO_AND_AGENT, max_seq_len=4096)
    limit = full["num_tokens"] - 3  # the last agent turn no longer fits
    cut = encode_conversation(tokenizer, DEMO_AND_AGENT, max_seq_len=limit)
    assert cut["truncated"] and cut["num_tokens"] <= limit
    assert cut["input_ids"][-1] == tokenizer.eos_token_id  # ends where an agent turn ends
    assert len(_labeled_runs(cut["labels"])) == 1
    with pytest.raises(RecordRejected, match="first exchange"):
        encode_conversation(tokenizer, DEMO_AND_AGENT, max_seq_len=20)


def test_template_checker_refuses_unusable_templates(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = "{% for m in messages|reverse %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(TemplateError, match="prefix-stable"):
        check_template(tok)
    tok.chat_template = None
    with pytest.raises(TemplateError, match="no chat_template"):
        check_template(tok)


def _row(**kw):
    """A trajectory row as read from parquet."""
    row = {
        "id": "x_0",
        "task": "db",
        "split": "train",
        "env_version": "db-v1",
        "status": "completed",
        "reward": 1.0,
        "conversations": DEMO_AND_AGENT,
        "turns": 2,
        "policy": '{"name": "expert"}',
        "seed": 0,
        "timings": "{}",
        "error": None,
    }
    return row | kw


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (_row(), ""),
        (_row(reward=0.9), "reward below 1"),
        # the paper's 2/3 threshold for Mind2Web
        (_row(task="mind2web", reward=0.7, conversations=MIND2WEB_TURNS), ""),
        (_row(task="mind2web", reward=0.5), "reward below 0.667"),
        # a db turn that does not parse as AgentBench's DB action (no ```sql block)
        (_row(conversations=NO_SQL_BLOCK), "invalid action format in turn 3: no `Action: Op"),
        # the mind2web format is not the db one (the db demo turns are not checked)
        (_row(task="mind2web", reward=0.7), "invalid action format in turn 3: no `Answer:`"),
        (_row(status="task_limit_reached"), "status task_limit_reached"),
        (_row(conversations=[]), "malformed: empty conversation"),
        (_row(conversations=DEMO_AND_AGENT[:2]), "malformed: no assistant turn to train on"),
        (_row(conversations=DEMO_AND_AGENT[1:]), "malformed: turn 0 is 'gpt', expected 'human'"),
        (_row(reward=float("nan")), "malformed: no reward"),
        (_row(reward=None), "malformed: reward: Input should be a valid number"),
        (_row(conversations=[{"from": "human"}]), "malformed: conversations.0.loss: Field"),
    ],
)
def test_trajectory_filter_gives_reasons(row, reason):
    out = classify_trajectory(row, ProcessConfig())
    assert out["reject_reason"].startswith(reason) if reason else out["reject_reason"] == ""
    if not reason:
        assert json.loads(out["conversations"])[1]["loss"] is False


def test_general_records_are_cleaned_or_set_aside():
    kept = classify_general(
        {
            "id": "a",
            "conversations": [
                {"from": "gpt", "value": "leading greeting"},
                {"from": "human", "value": "hi"},
                {"from": "chatgpt", "value": "hello"},
                {"from": "human", "value": "unanswered"},
            ],
        },
        0,
    )
    assert kept["reject_reason"] == ""
    assert [t["from"] for t in json.loads(kept["conversations"])] == ["human", "gpt"]
    assert classify_general({"id": "b"}, 1)["reject_reason"] == "malformed: no conversations list"
    empty_turn = {
        "id": "c",
        "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": " "}],
    }
    assert classify_general(empty_turn, 2)["reject_reason"] == "malformed: empty turn"
    assert classify_general("not a record", 3)["id"] == "sharegpt_3"


def test_general_count_for_eta():
    assert general_records_for(100, 0.2, available=10_000, cap=None) == 400
    assert general_records_for(100, 0.2, available=150, cap=None) == 150
    assert general_records_for(100, 0.2, available=10_000, cap=50) == 50
    assert general_records_for(100, 1.0, available=10_000, cap=None) == 0


def _expert_trajectories(family: str, n: int) -> list[Trajectory]:
    """Real episodes of the expert, played directly against the env (no Ray needed)."""
    env = make_env(family)
    rows = [expert_trajectory(env, task) for task in env.tasks("train")[:n]]
    env.close()
    return rows


def _with(record: Trajectory, **changes) -> Trajectory:
    return Trajectory.model_validate(record.model_dump() | changes)


def _write_old_shard(path, record: Trajectory) -> None:
    """A shard as collection wrote it before ``response_token_ids`` was dropped."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = TRAJECTORY_SCHEMA.append(pa.field("response_token_ids", pa.list_(pa.list_(pa.int32()))))
    row = record.to_row() | {"response_token_ids": [[1, 2, 3]]}
    pq.write_table(pa.Table.from_pylist([row], schema=old), path)


def _collect_outputs(root) -> list[Trajectory]:
    """A collect stage's trajectories (a few set aside for each reason) and three records of
    the public AgentInstruct schema, written by hand, under ``root``."""
    rows = _expert_trajectories("db", 30)
    assert all(r.reward == 1.0 for r in rows)
    rows[0] = _with(rows[0], reward=0.0, status="completed")
    rows[1] = _with(rows[1], status="agent_invalid_action", reward=0.0)
    rows[2] = _with(rows[2], conversations=[])
    rows.append(_with(rows[5], id="db_999"))  # the same task again under another id
    trajectories = root / "collect" / "trajectories"
    _write_old_shard(trajectories / "part-old.parquet", rows[3])  # a run from before
    sink = ParquetSink(trajectories, flush_every=7)
    for row in rows[:3] + rows[4:]:
        sink.add(row)
    sink.flush()
    public = root / "public" / "os.jsonl"  # one repeats an id
    public.parent.mkdir()
    public.write_text(
        "\n".join(json.dumps({"id": f"os_{i}", "conversations": OS_TURNS}) for i in (0, 1, 1))
    )
    return rows


def _stage_config(model: str, public: str) -> ProcessConfig:
    return ProcessConfig(model=model, eta=0.2, max_seq_len=1024, seed=3, agentinstruct=[public])


@pytest.fixture(scope="module")
def local_process(tmp_path_factory, tiny_model_dir, ray_local):
    """The stage run once on a local run dir: (run_dir, stats, trajectories)."""
    from agentray.process.run import run_process

    root = tmp_path_factory.mktemp("process-run")
    rows = _collect_outputs(root)
    stats = run_process(_stage_config(tiny_model_dir, str(root / "public" / "os.jsonl")), str(root))
    return str(root), stats, rows


def _process_on_s3(bucket: str, local_run: str, model: str) -> tuple[str, dict]:
    """The same stage on a run dir in the bucket, its inputs uploaded there."""
    from agentray.process.run import run_process

    run_dir = storage.join(bucket, "run")
    storage.upload_dir(storage.join(local_run, "collect"), storage.join(run_dir, "collect"))
    public = storage.join(bucket, "public", "os.jsonl")
    storage.write_bytes(public, storage.read_bytes(storage.join(local_run, "public", "os.jsonl")))
    return run_dir, run_process(_stage_config(model, public), run_dir)


def _jsonl(location: str) -> list[dict]:
    return [json.loads(line) for line in storage.read_text(location).splitlines()]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_process_stage_filters_mixes_and_tokenizes(
    where, local_process, tiny_model_dir, tokenizer, request, tmp_path, monkeypatch
):
    local_run, stats, rows = local_process
    run_dir = local_run
    if where == "s3":
        monkeypatch.chdir(tmp_path)
        local_stats = stats
        bucket = request.getfixturevalue("s3_bucket")
        run_dir, stats = _process_on_s3(bucket, local_run, tiny_model_dir)
        assert stats == local_stats
        assert not list(tmp_path.iterdir())  # nothing written to a local "s3:" folder

    out = storage.join(run_dir, "process")
    fs, train_path = storage.filesystem(storage.join(out, "train"))
    train = pq.read_table(train_path, filesystem=fs).to_pylist()
    agent = [r for r in train if r["source"] == "agent"]
    general = [r for r in train if r["source"] == "general"]
    # 27 good db trajectories + 1 public record (its copies share its problem text)
    assert len(agent) == 28 == stats["agent_records"]
    # exactly the general records eta asks for (the pool holds far more): 28 * 0.8 / 0.2;
    # those the tokenizer sets aside are replaced by the next ones drawn
    assert stats["general_records"] == len(general) == 112 and stats["mix_notes"] == []
    assert stats["eta_realized"] == len(agent) / len(train) == 0.2
    assert all(r["num_tokens"] <= 1024 and r["num_loss_tokens"] > 0 for r in train)
    for r in agent[:3]:
        assert len(r["input_ids"]) == len(r["labels"]) == r["num_tokens"]

    rejected = _jsonl(storage.join(out, "rejected.jsonl"))
    reasons = {r["id"]: r["reason"] for r in rejected if r["source"] == "agent"}
    assert reasons == {
        rows[0].id: "reward below 1",
        rows[1].id: "status agent_invalid_action",
        rows[2].id: "malformed: empty conversation",
        "db_999": f"duplicate problem of {rows[5].id}",
        "os_1": "duplicate task id",
    }
    assert stats["rejected"] == len(rejected)
    records = _jsonl(storage.join(out, "agentinstruct", "db.jsonl"))
    assert len(records) == 27 and {t["from"] for t in records[0]["conversations"]} == {
        "human",
        "gpt",
    }
    public_out = _jsonl(storage.join(out, "agentinstruct", "os.jsonl"))
    assert [r["id"] for r in public_out] == ["os_0"]
    manifest = storage.read_json(storage.join(out, "manifest.json"))
    assert manifest["counts"]["agent_records"] == 28
    assert manifest["outputs"]["train"] == storage.join(out, "train")

    # the stored labels are what the tokenizer gives for the stored conversation
    by_id = {
        r["id"]: r
        for path in storage.list_files(storage.join(out, "agentinstruct"), ".jsonl")
        for r in _jsonl(path)
    }
    sample = agent[0]
    again = encode_conversation(tokenizer, by_id[sample["id"]]["conversations"], 1024)
    assert again["input_ids"] == sample["input_ids"] and again["labels"] == sample["labels"]
    # the data card comes with its plots
    card = storage.read_text(storage.join(out, "data_card.md"))
    assert "realized 0.2" in card and "status agent_invalid_action: 1" in card
    for plot in ("data_card_rewards.png", "data_card_lengths.png", "data_card_rejected.png"):
        assert f"]({plot})" in card and len(storage.read_bytes(storage.join(out, plot))) > 1000
    if where == "s3":
        _assert_same_rows_as_local(out, storage.join(local_run, "process", "train"))


def _assert_same_rows_as_local(out: str, local_train: str) -> None:
    """Every artifact is in the bucket, and Ray Data reads back the local run's rows."""
    import ray

    names = [name[len(out) + 1 :] for name in storage.list_files(out)]
    for expected in ("rejected.jsonl", "manifest.json", "data_card.md", "agentinstruct/db.jsonl"):
        assert expected in names
    assert any(n.startswith("train/") and n.endswith(".parquet") for n in names)
    assert "tokenizer/tokenizer_config.json" in names

    def rows(location: str) -> list[dict]:
        found = ray.data.read_parquet(location).to_pandas().sort_values("id")
        return [
            {k: v.tolist() if hasattr(v, "tolist") else v for k, v in row.items()}
            for row in found.to_dict("records")
        ]

    assert rows(storage.join(out, "train")) == rows(local_train)


def _turn(speaker: str, value: str, loss: bool | None = None) -> dict:
    return {"from": speaker, "loss": loss, "value": value}


# Records of the public AgentInstruct schema written by hand: one per family, each in its
# family's action format, demonstration answers with loss false.
HAND_WRITTEN = {
    "os_0": [
        _turn("human", "You are an assistant that will act like a person. Use Act: bash, ..."),
        _turn("gpt", "Think: I will follow.\n\nAct: bash\n\n```bash\nls\n```", False),
        _turn("human", "Now, my problem is: how many files are in /etc?"),
        _turn("gpt", "Think: count them.\n\nAct: bash\n\n```bash\nls /etc | wc -l\n```", True),
        _turn("human", "The output of the OS:\n\n219"),
        _turn("gpt", "Think: that is the answer.\n\nAct: answer(219)", True),
    ],
    "db_0": [
        _turn("human", "I will ask you a question, then you should help me operate a MySQL ..."),
        _turn("gpt", "Ok.", False),
        _turn("human", "What is the total population? Table: city (name, population)"),
        _turn(
            "gpt", "Sum it.\nAction: Operation\n```sql\nSELECT SUM(population) FROM city\n```", True
        ),
        _turn("human", "[(4200,)]"),
        _turn("gpt", "Done.\nAction: Answer\nFinal Answer: [4200]", True),
    ],
    "alfworld_0": [
        _turn("human", "Interact with a household to solve a task. ..."),
        _turn("gpt", "OK", False),
        _turn("human", "Your task is to: put a mug in the desk."),
        _turn("gpt", "THOUGHT: find a mug first.\nACTION: go to shelf 1", True),
        _turn("human", "On the shelf 1, you see a mug 1."),
        _turn("gpt", "THOUGHT: take it.\nACTION: take mug 1 from shelf 1", True),
    ],
    "kg_0": [
        _turn("human", "You are an agent that answers questions based on the knowledge base..."),
        _turn("gpt", "I've understood your instruction, start please.", False),
        _turn("human", "A new question: where was Ada born? Entities: [Ada]"),
        _turn("gpt", "Thought: relations of Ada.\nAction: get_relations(Ada)", True),
        _turn("human", "Observation: [people.person.place_of_birth]"),
        _turn(
            "gpt",
            "Thought: follow it.\nAction: get_neighbors(Ada, people.person.place_of_birth)",
            True,
        ),
        _turn("human", "Observation: variable #0, which are instances of location.city"),
        _turn("gpt", "Thought: #0 is the answer.\nFinal Answer: #0", True),
    ],
    "webshop_0": [
        _turn("human", "You are web shopping. I will give you instructions ..."),
        _turn("gpt", "Ok.", False),
        _turn(
            "human",
            "WebShop [SEP] Instruction: [SEP] i need a red mug under 20 dollars [SEP] Search",
        ),
        _turn("gpt", "Thought: search it.\nAction: search[red mug]", True),
        _turn("human", "[SEP] B0001 [SEP] Red Mug [SEP] $9.99"),
        _turn("gpt", "Thought: this one.\nAction: click[b0001]", True),
    ],
    "mind2web_0": [
        _turn("human", "You are a helpful assistant that is great at website design ..."),
        _turn("gpt", "Ok.", False),
        _turn("human", "Task: book a table. Which element? A. None B. <button> Reserve </button>"),
        _turn("gpt", "Thought: the reserve button.\nAnswer: B.\nAction: CLICK", True),
    ],
}


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
def test_hand_written_agentinstruct_loads_mixes_and_trains(tmp_path, tiny_model_dir):
    """The public schema alone (no collection): loaded through datasets, filtered, mixed,
    packed, and trained on for a few steps by Ray Train."""
    from agentray.process.run import run_process
    from agentray.train.config import TrainConfig
    from agentray.train.trainer import run_train

    public = tmp_path / "AgentInstruct"
    public.mkdir()
    broken = {"id": "os_1", "conversations": HAND_WRITTEN["os_0"][:2]}
    with (public / "mixed.jsonl").open("w") as f:
        for record_id, turns in HAND_WRITTEN.items():
            f.write(json.dumps({"id": record_id, "conversations": turns}) + "\n")
        f.write(json.dumps(broken) + "\n")

    cfg = ProcessConfig(
        model=tiny_model_dir,
        agentinstruct=[str(public)],
        eta=0.2,
        max_seq_len=512,
        packing={"enabled": True},
    )
    stats = run_process(cfg, tmp_path)
    assert stats["agent_records"] == 6 and stats["general_records"] == 24
    agent_reasons = {k: v for k, v in stats["rejected_by_reason"].items() if k.startswith("agent")}
    assert agent_reasons == {"agent: malformed: no assistant turn to train on": 1}
    written = sorted(p.stem for p in (tmp_path / "process" / "agentinstruct").glob("*.jsonl"))
    assert written == sorted(record_id.rsplit("_", 1)[0] for record_id in HAND_WRITTEN)
    packs = pq.read_table(tmp_path / "process" / "train").to_pylist()
    assert sum(p["num_examples"] for p in packs) == stats["records"]
    assert all(len(p["input_ids"]) <= 512 for p in packs)

    result = run_train(
        TrainConfig(
            model=tiny_model_dir,
            num_workers=1,
            micro_batch_size=1,
            max_steps=3,
            max_seq_len=512,
            zero_stage=0,
            log_every_steps=1,
        ),
        tmp_path,
        progress=False,
    )
    assert result["steps"] == 3 and (tmp_path / "train" / "model" / "config.json").exists()
