"""Preference pairs from a round's exploration: successes vs failures of the same task,
split into a shared prompt and the two continuations, written as a preference dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from iterate_records import db_trajectory, trajectory_folder

from agentray import storage
from agentray.config import IterateConfig
from agentray.iterate.pairs import split_pair, write_preference_pairs
from agentray.process import ProcessConfig
from agentray.types import Status

PROMPT = {"role": "user", "content": "Task: count the rows of table t, then say done."}
OBSERVATION = {"role": "user", "content": "Observation: 3"}


def _record(task_id: str, replies: list[str], reward: float, status=Status.COMPLETED):
    messages = [PROMPT]
    for i, reply in enumerate(replies):
        messages += [{"role": "assistant", "content": reply}]
        if i < len(replies) - 1:
            messages += [OBSERVATION]
    return db_trajectory(task_id, messages, reward, {"backend": "hf", "round": 0}, status)


def test_split_pair_shares_the_opening_up_to_the_last_shared_user_turn():
    a = [PROMPT, {"role": "assistant", "content": "SELECT 1"}, OBSERVATION]
    chosen = [*a, {"role": "assistant", "content": "done"}]
    rejected = [*a, {"role": "assistant", "content": "give up"}, OBSERVATION]
    prompt, win, lose = split_pair(chosen, rejected)
    assert prompt == a
    assert win == [{"role": "assistant", "content": "done"}]
    assert lose == [{"role": "assistant", "content": "give up"}, OBSERVATION]
    # one a prefix of the other after an agent turn: the prompt steps back to a user turn
    prompt, win, lose = split_pair(chosen, chosen[:2])
    assert prompt == [PROMPT] and win == chosen[1:] and lose == chosen[1:2]
    with pytest.raises(ValueError, match="do not diverge"):
        split_pair(chosen, list(chosen))


def test_preference_pairs_of_a_round(tmp_path):
    sample0 = trajectory_folder(
        tmp_path / "s0",
        [
            _record("db_0", ["SELECT count(*) FROM t", "done: 3"], 1.0),
            _record("db_1", ["SELECT 1"], 1.0),  # only successes: no pair
            _record("db_2", ["DROP TABLE t"], 0.0),  # only failures: no pair
            _record("db_3", ["SELECT count(*) FROM t"], 1.0),
        ],
        round=0,
    )
    sample1 = trajectory_folder(
        tmp_path / "s1",
        [
            _record("db_0", ["SELECT count(*) FROM t", "done: 4"], 0.0),
            _record("db_1", ["SELECT 1"], 0.0, Status.TASK_ERROR),  # not the agent's failure
            _record("db_2", ["DROP TABLE t"], 0.0),  # a duplicate
            _record("db_3", ["SELECT * FROM t"], 0.0),
        ],
        round=0,
    )
    sample2 = trajectory_folder(tmp_path / "s2", [_record("db_0", ["I cannot"], 0.0)], round=0)
    out = str(tmp_path / "pairs")
    it = IterateConfig(preference_pairs=True, pairs_per_task=1)
    counts = write_preference_pairs(
        [sample0, sample1, sample2], it, ProcessConfig(check_actions=False), out
    )
    assert counts["pairs"] == 2  # db_0 (capped at 1 of 2) and db_3
    assert counts["tasks_with_pairs"] == 2
    assert counts["tasks_only_chosen"] == 1 and counts["tasks_only_rejected"] == 1
    assert counts["task_error_skipped"] == 1 and counts["duplicate_trajectory"] == 1
    assert counts["read"] == 9 and counts["by_family"] == {"db": 2}

    rows = {r["task_id"]: r for r in pq.read_table(f"{out}/pairs.parquet").to_pylist()}
    db0 = rows["db_0"]
    # the shared opening runs to the observation both saw; the first of db_0's failures
    assert db0["prompt"] == [
        PROMPT,
        {"role": "assistant", "content": "SELECT count(*) FROM t"},
        OBSERVATION,
    ]
    assert db0["chosen"] == [{"role": "assistant", "content": "done: 3"}]
    assert db0["rejected"] == [{"role": "assistant", "content": "done: 4"}]
    assert (db0["chosen_reward"], db0["rejected_reward"]) == (1.0, 0.0)
    assert rows["db_3"]["prompt"] == [PROMPT]
    assert rows["db_3"]["chosen"] == [{"role": "assistant", "content": "SELECT count(*) FROM t"}]
    jsonl = [json.loads(line) for line in Path(out, "pairs.jsonl").read_text().splitlines()]
    assert sorted(r["task_id"] for r in jsonl) == ["db_0", "db_3"]
    manifest = storage.read_json(f"{out}/manifest.json")
    assert manifest["stage"] == "pairs" and manifest["counts"]["pairs"] == 2
    assert [s["path"] for s in manifest["inputs"]["trajectories"]] == [
        str(tmp_path / s) for s in ("s0", "s1", "s2")
    ]


def test_pairs_load_as_a_conversational_preference_dataset(tmp_path, tiny_model_dir):
    """What TRL's DPO trainer does with a row: datasets reads the parquet, and the chat
    template renders prompt + chosen as one conversation that starts with the prompt's."""
    from datasets import load_dataset
    from transformers import AutoTokenizer

    samples = [
        trajectory_folder(tmp_path / "s0", [_record("db_0", ["SELECT count(*) FROM t"], 1.0)]),
        trajectory_folder(tmp_path / "s1", [_record("db_0", ["DROP t"], 0.0)]),
    ]
    out = tmp_path / "pairs"
    write_preference_pairs(samples, IterateConfig(), ProcessConfig(check_actions=False), str(out))
    ds = load_dataset("parquet", data_files=str(out / "pairs.parquet"), split="train")
    assert {"prompt", "chosen", "rejected"} <= set(ds.column_names) and len(ds) == 1
    row = ds[0]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False)
    for side in ("chosen", "rejected"):
        assert row[side][0]["role"] == "assistant"
        full = tokenizer.apply_chat_template(row["prompt"] + row[side], tokenize=False)
        assert full.startswith(prompt) and row[side][0]["content"] in full[len(prompt) :]


def test_a_rounds_pairs_feed_the_dpo_trainer_and_a_dpo_round_is_configured(
    tmp_path, tiny_model_dir
):
    """What ``iterate.train_loss: dpo`` hands the train stage: round k's pairs.parquet, read
    and tokenized by the trainer's DPO side, from round k-1's model."""
    from transformers import AutoTokenizer

    from agentray.config import PipelineConfig
    from agentray.iterate.run import model_of, round_config
    from agentray.train.preference import read_pairs, tokenize_pairs

    cfg = PipelineConfig(
        run_dir=str(tmp_path / "run"),
        train={"dpo": {"beta": 0.25}},
        iterate={"preference_pairs": True, "train_from": "previous", "train_loss": "dpo"},
    )
    assert round_config(cfg, 0).train.loss == "sft"  # round 0 is the pipeline
    train = round_config(cfg, 1).train
    pairs = str(tmp_path / "run" / "round-1" / "pairs")
    assert (train.loss, train.dpo.beta) == ("dpo", 0.25)
    assert train.dpo.pairs == f"{pairs}/pairs.parquet"
    assert train.model == model_of(cfg, 0)

    samples = [
        trajectory_folder(
            tmp_path / "s0", [_record("db_0", ["SELECT count(*) FROM t", "done: 3"], 1.0)], round=0
        ),
        trajectory_folder(
            tmp_path / "s1", [_record("db_0", ["SELECT count(*) FROM t", "done: 4"], 0.0)], round=0
        ),
    ]
    write_preference_pairs(samples, cfg.iterate, ProcessConfig(check_actions=False), pairs)
    rows, too_long = tokenize_pairs(
        read_pairs(train.dpo.pairs), AutoTokenizer.from_pretrained(tiny_model_dir), 512
    )
    assert len(rows) == 1 and too_long == []
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    chosen = [t for t in rows[0]["chosen_labels"] if t != -100]
    rejected = [t for t in rows[0]["rejected_labels"] if t != -100]
    assert "done: 3" in tokenizer.decode(chosen) and "done: 4" in tokenizer.decode(rejected)
    assert "SELECT" not in tokenizer.decode(chosen)  # the shared opening is the prompt


@pytest.mark.parametrize(
    "settings",
    [
        {"train_loss": "dpo"},
        {"train_loss": "dpo", "preference_pairs": True},
        {"train_loss": "dpo", "train_from": "previous"},
    ],
)
def test_a_dpo_round_needs_pairs_from_the_previous_model(settings):
    with pytest.raises(ValueError, match="iterate.train_loss 'dpo' needs"):
        IterateConfig(**settings)


def test_the_model_card_of_a_dpo_round_states_its_loss_and_pairs(tmp_path):
    from agentray.config import PipelineConfig
    from agentray.iterate.card import write_model_card

    here = tmp_path / "round-1"
    (here / "train" / "model").mkdir(parents=True)
    (here / "train" / "model" / "config.json").write_text("{}")
    train = {"loss": "dpo", "dpo": {"beta": 0.25, "label_smoothing": 0.0, "pairs": "p"}}
    inputs = {"rows": 7, "pairs": f"{here}/pairs/pairs.parquet", "pairs_too_long": 1}
    storage.write_json(here / "train" / "manifest.json", {"config": train, "inputs": inputs})
    card = Path(write_model_card(str(here), 1, PipelineConfig(run_dir=str(tmp_path)))).read_text()
    assert "- loss: dpo (beta 0.25, label_smoothing 0.0) on 7 pairs of" in card
    assert "(1 set aside as longer than max_seq_len)" in card
