"""The paper's Overall score: the formula, the shipped reference numbers, user reference files."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from agentray.eval.config import EvalConfig
from agentray.eval.overall import (
    CATEGORIES,
    ReferenceError,
    category_overall,
    load_reference,
    overall_score,
    published_overall,
    task_weights,
)


def test_formula_reproduces_every_published_overall_from_the_per_task_numbers():
    reference = load_reference()
    assert reference.reference_models == [
        "gpt-3.5-turbo",
        "gpt-4",
        "llama-2-7b-chat",
        "llama-2-13b-chat",
        "llama-2-70b-chat",
    ]
    checked = 0
    for category in CATEGORIES:
        published = reference.overall[category]
        assert len(published) == 8  # 5 reference models + AgentLM-7B/13B/70B
        for model, number in published.items():
            assert round(published_overall(reference, category, model), 2) == number, (
                category,
                model,
            )
            checked += 1
    assert checked == 24


def test_weights_are_inverse_reference_means():
    scores = {"a": {"m1": 20.0, "m2": 60.0}, "b": {"m1": 0.0, "m2": 0.0}, "c": {"m1": 5, "m2": 5}}
    weights = task_weights(scores, ["m1", "m2"])
    assert weights == {"a": 1 / 40, "b": None, "c": 1 / 5}
    # a model scoring the reference mean on every task has Overall 1
    assert overall_score({"a": 40.0, "c": 5.0}, weights) == pytest.approx(1.0)
    assert overall_score({"a": 80.0, "c": 0.0}, weights) == pytest.approx(1.0)
    assert overall_score({}, weights) is None


def test_our_tasks_map_to_the_papers_and_unmatched_ones_get_no_weight():
    reference = load_reference()
    held_out = category_overall(
        {"scienceworld": 21.2, "miniwob": 66.7, "my_new_env": 50.0}, reference, "held_out"
    )
    assert held_out["reference_task"] == {"scienceworld": "sciworld", "miniwob": "miniwob++"}
    assert set(held_out["weights"]) == {"scienceworld", "miniwob"}
    assert "my_new_env" in held_out["unweighted"]
    assert "no held_out task 'my_new_env'" in held_out["unweighted"]["my_new_env"]
    assert held_out["reference_tasks_not_run"] == [
        "webarena",
        "hotpotqa",
        "rewoo",
        "digital_card_game",
    ]
    sci_mean = (21.2 + 36.4 + 5.9 + 6.4 + 7.9) / 5
    mini_mean = (66.7 + 69.4 + 0.0 + 19.6 + 0.7) / 5
    expected = (21.2 / sci_mean + 66.7 / mini_mean) / 2
    assert held_out["overall"] == pytest.approx(expected)

    general = category_overall(
        {"mmlu": 48.0, "humaneval": 13.9, "gsm_symbolic": 27.7, "mt_bench": None},
        reference,
        "general",
    )
    assert general["reference_task"]["gsm_symbolic"] == "gsm8k"
    assert general["unweighted"] == {"mt_bench": "no score (skipped or nothing rated)"}
    assert general["reference_tasks_not_run"] == ["mt_bench"]


def test_a_user_reference_file_replaces_the_papers(tmp_path):
    path = tmp_path / "ref.json"
    path.write_text(
        json.dumps(
            {
                "reference_models": ["base", "gpt"],
                "scores": {
                    "held_in": {"db": {"base": 10, "gpt": 30}, "os": {"base": 0, "gpt": 50}}
                },
            }
        )
    )
    reference = load_reference(path)
    result = category_overall({"db": 40.0, "os": 25.0}, reference, "held_in")
    assert result["weights"] == {"db": 1 / 20, "os": 1 / 25}
    assert result["overall"] == pytest.approx((2.0 + 1.0) / 2)
    assert category_overall({"mmlu": 50.0}, reference, "general")["overall"] is None


def test_bad_reference_files_name_the_file_and_the_field(tmp_path):
    missing = tmp_path / "missing_model.json"
    missing.write_text(
        json.dumps({"reference_models": ["a", "b"], "scores": {"general": {"mmlu": {"a": 1}}}})
    )
    with pytest.raises(ReferenceError, match=r"missing_model.json.*scores.general.mmlu.*\['b'\]"):
        load_reference(missing)
    bad_category = tmp_path / "bad_category.json"
    bad_category.write_text(json.dumps({"reference_models": ["a"], "scores": {"heldin": {}}}))
    with pytest.raises(ReferenceError, match=r"scores.heldin"):
        load_reference(bad_category)
    not_json = tmp_path / "not.json"
    not_json.write_text("{")
    with pytest.raises(ReferenceError, match="not.json"):
        load_reference(not_json)
    with pytest.raises(ReferenceError, match="nowhere.json"):
        load_reference(tmp_path / "nowhere.json")


def test_eval_config_checks_held_out_and_suites():
    cfg = EvalConfig()
    assert cfg.held_out == [] and cfg.general.suites == [
        "mmlu",
        "humaneval",
        "gsm_symbolic",
        "mt_bench",
    ]
    assert cfg.general.mt_bench.judge is None
    with pytest.raises(ValidationError, match="both held-in and held-out"):
        EvalConfig(held_out=["db"])
    with pytest.raises(ValidationError, match="unknown env families"):
        EvalConfig(held_out=["sciworld_typo"])
    with pytest.raises(ValidationError, match="unknown general suites.*allowed"):
        EvalConfig(general={"suites": ["mmlu", "gsm8k"]})
    with pytest.raises(ValidationError, match="n_shots"):
        EvalConfig(general={"mmlu": {"n_shots": 6}})
