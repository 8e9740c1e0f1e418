"""Hybrid mix planning, general-data sources, long-conversation policies, template presets."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import pytest

from agentray import storage
from agentray.model.templates import AGENTLM_SYSTEM_PROMPT
from agentray.process.general import classify_general, iter_general, iter_sharegpt
from agentray.process.mix import plan_mix
from agentray.process.tokenize import (
    IGNORE_INDEX,
    RecordRejected,
    encode_pieces,
    load_tokenizer,
)

AGENT = [(f"a{i}", 100 + 37 * i) for i in range(10)]
GENERAL = [(f"g{i}", 50 + (i * 53) % 400) for i in range(200)]


# ------------------------------------------------------------------------------ mix planning


@pytest.mark.parametrize("eta", [0.2, 0.35, 0.5, 0.9])
def test_downsampled_mix_hits_eta_by_examples_within_one_example(eta):
    plan = plan_mix(AGENT, GENERAL, eta)
    assert plan.agent_copies == {i: 1 for i, _ in AGENT}
    # general ids are a prefix of the seeded draw order
    assert plan.general_ids == [i for i, _ in GENERAL[: len(plan.general_ids)]]
    exact_general = len(AGENT) * (1 - eta) / eta
    assert abs(len(plan.general_ids) - exact_general) <= 1
    assert not plan.notes


@pytest.mark.parametrize("eta", [0.2, 0.5])
def test_downsampled_mix_hits_eta_by_tokens_within_one_example(eta):
    plan = plan_mix(AGENT, GENERAL, eta, by="tokens")
    agent_tokens = sum(n for _, n in AGENT)
    target = agent_tokens * (1 - eta) / eta
    biggest = max(n for _, n in GENERAL)
    assert abs(plan.general_tokens - target) <= biggest
    assert plan.agent_tokens == agent_tokens
    assert abs(plan.eta_tokens - eta) < 0.02


def test_upsampled_agent_uses_the_whole_general_pool_and_repeats_evenly():
    plan = plan_mix(AGENT, GENERAL[:120], 0.5, balance="upsample_agent", seed=1)
    assert len(plan.general_ids) == 120
    assert plan.agent_examples == 120  # eta 0.5: as many agent as general examples
    copies = list(plan.agent_copies.values())
    assert max(copies) - min(copies) <= 1 and sum(copies) == 120
    tokens = plan_mix(AGENT, GENERAL, 0.2, by="tokens", balance="upsample_agent")
    assert abs(tokens.eta_tokens - 0.2) < 0.01


def test_small_general_pool_is_reported_not_hidden():
    plan = plan_mix(AGENT, GENERAL[:15], 0.2)
    assert len(plan.general_ids) == 15
    assert plan.notes and "ran out" in plan.notes[0]
    assert plan.eta_examples == pytest.approx(10 / 25)


def test_cap_and_agent_only():
    assert len(plan_mix(AGENT, GENERAL, 0.2, max_general=7).general_ids) == 7
    alone = plan_mix(AGENT, GENERAL, 1.0)
    assert alone.general_ids == [] and alone.eta_examples == 1.0


# ------------------------------------------------------------------------------ general data


def _sharegpt(n: int) -> list[dict]:
    return list(itertools.islice(iter_sharegpt(), n))


@pytest.mark.parametrize("where", ["local", "s3"])
def test_general_data_reads_json_jsonl_parquet_and_saved_datasets(where, tmp_path, request):
    import datasets

    records = [
        {
            "id": f"r{i}",
            "conversations": [
                {"from": "human", "value": f"q{i}"},
                {"from": "gpt", "value": f"a{i}"},
            ],
        }
        for i in range(5)
    ]
    (tmp_path / "array.json").write_text(json.dumps(records))
    (tmp_path / "lines.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    datasets.Dataset.from_list(records).to_parquet(str(tmp_path / "table.parquet"))
    datasets.Dataset.from_list(records).save_to_disk(str(tmp_path / "saved"))
    base = str(tmp_path)
    if where == "s3":  # the same files in a bucket, read through this node's cache
        base = storage.join(request.getfixturevalue("s3_bucket"), "general")
        storage.upload_dir(tmp_path, base)
    for source in ("array.json", "lines.jsonl", "table.parquet", "saved"):
        loaded = list(iter_general(storage.join(base, source)))
        assert loaded == records, source
        assert classify_general(loaded[0], 0)["reject_reason"] == ""
    missing = "no/such/place" if where == "local" else storage.join(base, "no-such-place")
    with pytest.raises(FileNotFoundError, match=f"general_data '{missing}'"):
        list(iter_general(missing))


def test_default_general_data_is_the_bundled_sharegpt():
    first = _sharegpt(3)
    assert list(itertools.islice(iter_general(None), 3)) == first


# ------------------------------------------------------------------- long conversations, masks


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


def _turns(n: int, words: int = 30) -> list[dict]:
    turns = []
    for k in range(n):
        turns.append({"from": "human", "loss": None, "value": f"question {k} " + "word " * words})
        turns.append({"from": "gpt", "loss": True, "value": f"answer {k} " + "reply " * words})
    return turns


def _template_ids(tokenizer, turns) -> list[int]:
    chat = [
        {"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]}
        for t in turns
    ]
    ids = tokenizer.apply_chat_template(chat, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


def test_split_makes_whole_exchanges_that_each_match_the_template(tokenizer):
    turns = _turns(6)
    whole = encode_pieces(tokenizer, turns, 100_000, "split")[0]
    limit = whole["num_tokens"] // 3
    pieces = encode_pieces(tokenizer, turns, limit, "split")
    assert len(pieces) >= 3
    consumed = 0
    for piece in pieces:
        assert piece["num_tokens"] <= limit and not piece["truncated"]
        # each piece is the template rendering of a run of whole exchanges
        for n_exchanges in range(1, 7):
            span = turns[consumed : consumed + 2 * n_exchanges]
            if _template_ids(tokenizer, span) == piece["input_ids"]:
                consumed += 2 * n_exchanges
                break
        else:
            pytest.fail("a piece is not a run of whole exchanges")
    assert consumed == len(turns)  # nothing lost between pieces


def test_cut_and_drop_policies(tokenizer):
    turns = _turns(6)
    limit = encode_pieces(tokenizer, turns, 100_000)[0]["num_tokens"] // 2
    [cut] = encode_pieces(tokenizer, turns, limit, "cut")
    assert cut["truncated"] and cut["input_ids"][-1] == tokenizer.eos_token_id
    with pytest.raises(RecordRejected, match="too_long=drop"):
        encode_pieces(tokenizer, turns, limit, "drop")
    [fits] = encode_pieces(tokenizer, _turns(1), limit, "drop")
    assert not fits["truncated"]


def test_sharegpt_masks_match_the_template_token_for_token(tokenizer):
    checked = 0
    for index, record in enumerate(_sharegpt(60)):
        row = classify_general(record, index)
        if row["reject_reason"]:
            continue
        turns = json.loads(row["conversations"])
        [example] = encode_pieces(tokenizer, turns, 1_000_000)
        assert example["input_ids"] == _template_ids(tokenizer, turns)
        labeled = Counter(label != IGNORE_INDEX for label in example["labels"])
        assert labeled[True] == example["num_loss_tokens"] > 0
        checked += 1
    assert checked >= 30


def test_agentlm_preset_renders_the_fixed_system_prompt(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir, "agentlm")
    chat = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]
    text = tok.apply_chat_template(chat, tokenize=False)
    assert text.startswith(f"<s>[INST] <<SYS>>\n{AGENTLM_SYSTEM_PROMPT}\n<</SYS>>\n\nhello [/INST]")
    own = tok.apply_chat_template([{"role": "system", "content": "S"}, *chat], tokenize=False)
    assert AGENTLM_SYSTEM_PROMPT not in own and "<<SYS>>\nS\n<</SYS>>" in own
    plain = load_tokenizer(tiny_model_dir, "llama-2-chat").apply_chat_template(chat, tokenize=False)
    assert "<<SYS>>" not in plain
    # masks stay exact under the preset: the system prompt is never a target
    [example] = encode_pieces(tok, _turns(2), 10_000)
    assert example["input_ids"] == _template_ids(tok, _turns(2))
    targets = tok.decode([t for t in example["labels"] if t != IGNORE_INDEX])
    assert "honest" not in targets and "answer 0" in targets


def test_template_checker_fails_loudly_on_a_mismatch(tokenizer):
    from agentray.process.tokenize import (
        ConversationTokenizer,
        TemplateMismatch,
        check_against_template,
    )

    turns = _turns(2)
    chat = [
        {"role": "user" if t["from"] == "human" else "assistant", "content": t["value"]}
        for t in turns
    ]
    ids = _template_ids(tokenizer, turns)
    check_against_template(tokenizer, chat, ids)  # equal: no error
    with pytest.raises(TemplateMismatch, match="at position 5"):
        check_against_template(tokenizer, chat, ids[:5] + [ids[5] + 1] + ids[6:])
    # the Ray Data stage checks every record with verify_every=1 and passes real records
    stage = ConversationTokenizer(tokenizer.name_or_path, 4096, verify_every=1)
    out = stage(
        {
            "id": ["r0"],
            "source": ["general"],
            "family": ["general"],
            "conversations": [json.dumps(turns)],
        }
    )
    assert out["reject_reason"] == [""] and out["input_ids"][0] == ids
