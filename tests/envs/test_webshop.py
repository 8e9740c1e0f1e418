"""The WebShop family: catalogue and search, pages, the expert, WebShop's reward, statuses."""

from __future__ import annotations

import ast
import json

import pytest
from pydantic import ValidationError

from agentray.envs.base import Env
from agentray.envs.webshop import WebShopConfig, WebShopEnv
from agentray.envs.webshop.catalogue import catalogue
from agentray.envs.webshop.pages import parse_action, problem_text
from agentray.envs.webshop.score import get_reward, normalize_color, token_set_ratio
from agentray.types import Status

SAMPLE = WebShopConfig(n_train=40, n_test=30, seed=3)


def _act(action: str) -> str:
    return f"Thought:\nI think so.\n\nAction:\n{action}"


def _page(observation: str) -> tuple[list[str], dict]:
    """An observation's [SEP] parts and its available actions."""
    head, available = observation.split("\n\nAvailable Actions:\n")
    assert head.startswith("Observation:\n")
    return head.removeprefix("Observation:\n").split(" [SEP] "), ast.literal_eval(available)


def _task_with_options(env: WebShopEnv):
    return next(t for t in env.tasks("train") if t.payload["goal_options"])


def test_expert_solves_every_sampled_task():
    env = WebShopEnv(SAMPLE)
    tasks = env.tasks("train") + env.tasks("test")
    assert len(tasks) == 70
    assert len({t.payload["category"] for t in tasks}) == 5
    assert {len(t.payload["goal_options"]) for t in tasks} >= {0, 1, 2}
    rewards = []
    for task in tasks:
        env.reset(task)
        plan = env.expert_actions(task)
        assert len(plan) <= env.config.max_rounds
        for action in plan:
            result = env.step(action)
        assert result.done and result.status == Status.COMPLETED, (task.id, result)
        assert result.reward == 1.0, (task.id, task.payload["instruction_text"], result.info)
        rewards.append(result.reward)
    assert sum(rewards) / len(rewards) >= 0.99


def test_generation_is_deterministic_with_disjoint_unique_splits():
    a, b = WebShopEnv(SAMPLE), WebShopEnv(SAMPLE)
    train, test = a.tasks("train"), a.tasks("test")
    assert [t.model_dump() for t in train + test] == [
        t.model_dump() for t in b.tasks("train") + b.tasks("test")
    ]
    assert [t.id for t in train + test] == [f"webshop_{i}" for i in range(70)]
    assert {t.split for t in train} == {"train"} and {t.split for t in test} == {"test"}
    problems = [Env.problem_of(a.prompt(t)) for t in train + test]
    assert len(set(problems)) == len(problems)
    json.dumps([t.payload for t in train + test])  # payloads cross parquet / Ray as JSON
    other = WebShopEnv(WebShopConfig(n_train=40, n_test=30, seed=4)).tasks("train")
    assert [t.payload for t in other] != [t.payload for t in train]
    bigger = WebShopEnv(WebShopConfig(n_train=40, n_test=35, seed=3))
    assert [t.payload for t in bigger.tasks("train")] == [t.payload for t in train]
    assert [t.payload for t in bigger.tasks("test")[:30]] == [t.payload for t in test]


def test_catalogue_is_seeded_and_search_ranks_by_bm25():
    cat = catalogue(3, 1000)
    assert len(cat.products) == len(cat.by_asin) == 1000
    assert catalogue(3, 1000) is cat  # built once per process
    same = catalogue.__wrapped__(3, 1000)
    assert [p["Title"] for p in same.products] == [p["Title"] for p in cat.products]
    assert [p["asin"] for p in catalogue(4, 1000).products] != [p["asin"] for p in cat.products]
    hits = cat.search("ergonomic office chair lumbar support")
    assert len(hits) == 50 and len(set(hits)) == 50
    assert all(cat.by_asin[a]["query"] == "office chair" for a in hits[:10])
    assert cat.search("zzzz qqqq") == [] and cat.search("the and of") == []
    # the plural and singular forms meet (Lucene's minimal stemmer)
    assert cat.search("office chairs")[:10] == cat.search("office chair")[:10]


def test_pages_and_navigation_follow_webshop_text_env():
    env = WebShopEnv(SAMPLE)
    task = _task_with_options(env)
    instruction = task.payload["instruction_text"]
    messages = env.reset(task)
    parts, available = _page(messages[-1]["content"])
    assert parts == ["WebShop", "Instruction:", instruction, "Search"]
    assert available == {"has_search_bar": True, "clickables": ["search"]}

    result = env.step(_act(f"search[{task.payload['query']}]"))
    parts, available = _page(result.observation)
    total = len(env.catalogue.search(task.payload["query"]))
    assert 20 < total <= 50
    assert parts[:4] == ["Instruction:", instruction, "Back to Search", f"Page 1 (Total results: {total})"]  # fmt: skip
    assert parts[4] == "Next >" and len(parts) == 5 + 3 * 10 and parts[7].startswith("$")
    assert available["has_search_bar"] is False
    assert available["clickables"][:2] == ["back to search", "next >"]
    assert available["clickables"][2:] == [p.lower() for p in parts[5::3]]

    result = env.step(_act("click[Next >]"))
    parts, available = _page(result.observation)
    assert parts[3:5] == [f"Page 2 (Total results: {total})", "< Prev"]
    assert available["clickables"][:3] == ["back to search", "< prev", "next >"]
    parts = parts[6:] if parts[5] == "Next >" else parts[5:]
    asin = parts[0]
    product = env.catalogue.by_asin[asin]

    result = env.step(_act(f"click[{asin}]"))
    parts, available = _page(result.observation)
    options = [v for values in product["options"].values() for v in values]
    assert parts[:4] == ["Instruction:", instruction, "Back to Search", "< Prev"]
    assert parts[-7:] == [
        product["Title"],
        f"Price: {product['Price']}",
        f"Rating: {product['Rating']}",
        "Description",
        "Features",
        "Reviews",
        "Buy Now",
    ]
    assert available["clickables"] == [
        "back to search",
        "< prev",
        "description",
        "features",
        "reviews",
        "buy now",
        *options,
    ]
    item_page = result.observation

    env.step(_act(f"click[{options[0]}]"))
    result = env.step(_act("click[Features]"))
    parts, available = _page(result.observation)
    assert parts[4:] == product["BulletPoints"]
    assert available["clickables"] == ["back to search", "< prev"]
    assert env.step(_act("click[< Prev]")).observation == item_page  # back to the item
    assert env._session.options == {next(iter(product["options"])): options[0]}
    result = env.step(_act("click[< Prev]"))  # back to the same results page
    assert _page(result.observation)[0][3] == f"Page 2 (Total results: {total})"
    result = env.step(_act("click[Back to Search]"))
    assert _page(result.observation)[0][0] == "WebShop" and not result.done


def test_malformed_replies_end_with_invalid_action():
    env = WebShopEnv(SAMPLE)
    task = env.tasks("train")[0]
    bad_replies = (
        "I think I should buy the red one.",
        "Thought:\nsearch the shop\n\nAction:\nbuy[B012345678]",
        "search[red shoes]",  # no "Action:"
        "Action: search[]",
        "",
    )
    for bad in bad_replies:
        env.reset(task)
        result = env.step(bad)
        assert result.done and result.status == Status.AGENT_INVALID_ACTION, bad
        assert result.reward == 0.0


def test_actions_the_page_cannot_take_perform_nothing():
    env = WebShopEnv(SAMPLE)
    task = env.tasks("train")[0]
    first = env.reset(task)[-1]["content"]
    for action in ("click[search]", "click[Buy Now]", "click[Next >]", "click[B000000000]"):
        result = env.step(_act(action))
        assert not result.done and result.status == Status.RUNNING, action
        assert result.observation == first and result.info["performed"] is False
    # search works from any page, as in WebShop's text env
    env.step(_act(f"search[{task.payload['query']}]"))
    asin = env._session.hits[0]
    env.step(_act(f"click[{asin.lower()}]"))  # clicks are case-insensitive
    assert env._session.page == "item"
    result = env.step(_act("search[zzzz]"))
    assert _page(result.observation)[0][3] == "Page 1 (Total results: 0)"


def test_round_limit_gives_task_limit_reached():
    env = WebShopEnv(WebShopConfig(n_train=2, n_test=1, max_rounds=3))
    assert WebShopConfig().max_rounds == 10  # AgentBench's WebShop loop
    task = env.tasks("train")[0]
    env.reset(task)
    assert not env.step(_act("search[anything]")).done
    assert not env.step(_act("click[nothing here]")).done
    result = env.step(_act("click[Back to Search]"))
    assert result.done and result.status == Status.TASK_LIMIT_REACHED and result.reward == 0.0
    assert result.observation.startswith("Observation:\nWebShop [SEP]")
    assert env.step(_act("click[Buy Now]")).status == Status.TASK_ERROR  # the episode is over


def test_step_without_reset_is_a_task_error():
    result = WebShopEnv(SAMPLE).step(_act("search[shoes]"))
    assert result.done and result.status == Status.TASK_ERROR


def _buy(env: WebShopEnv, task, asin: str, options: list[str]) -> float:
    product = env.catalogue.by_asin[asin]
    env.reset(task)
    query = f"{product['Title']} {product['BulletPoints'][0]}"
    result = env.step(_act(f"search[{query}]"))
    assert asin in result.observation  # on the first page of results
    env.step(_act(f"click[{asin}]"))
    for option in options:
        env.step(_act(f"click[{option}]"))
    result = env.step(_act("click[Buy Now]"))
    assert result.done and result.status == Status.COMPLETED
    return result.reward


def test_reward_is_webshop_matching_reward():
    env = WebShopEnv(SAMPLE)
    cat = env.catalogue
    task = _task_with_options(env)
    goal = task.payload
    n_attr, n_opt = len(goal["attributes"]), len(goal["goal_options"])
    target = goal["asin"]
    assert _buy(env, task, target, goal["goal_options"]) == 1.0
    # no option chosen: only the option terms are lost
    assert _buy(env, task, target, []) == pytest.approx((n_attr + 1) / (n_attr + n_opt + 1))
    # another value of the first goal option's group
    product = cat.by_asin[target]
    group = next(g for g, values in product["options"].items() if goal["goal_options"][0] in values)
    other = next(v for v in product["options"][group] if v != goal["goal_options"][0])
    wrong = [other, *goal["goal_options"][1:]]
    assert _buy(env, task, target, wrong) == pytest.approx((n_attr + n_opt) / (n_attr + n_opt + 1))
    # a product of another category shares no title noun: r_type 0
    far = next(p for p in cat.products if not set(p["title_nouns"]) & set(goal["name_nouns"]))
    assert _buy(env, task, far["asin"], []) == 0.0
    env.close()


def test_reward_parts_on_hand_made_products():
    goal = {
        "query": "t-shirt",
        "product_category": "Clothing › Men › Shirts",
        "name_nouns": ["acme", "t-shirt"],
        "attributes": ["machine washable", "classic fit"],
        "goal_options": ["navy blue", "medium"],
        "price_upper": 30.0,
    }
    product = {
        "query": "t-shirt",
        "product_category": "Clothing › Men › Shirts",
        "title_nouns": ["zeta", "t-shirt"],
        "Title": "Zeta Classic Fit T-Shirt",  # attribute found in the title
        "BulletPoints": ["Soft cotton"],
        "Description": "A shirt.",
        "Attributes": ["Machine Washable!"],  # fuzzy match
    }
    # normalize_color maps both "navy blue" and "dark blue" to "blue"
    reward, info = get_reward(product, goal, 20.0, {"color": "dark blue", "size": "medium"})
    assert reward == 1.0 and info["r_att"] == 1.0 and info["r_option"] == 1.0
    reward, info = get_reward(product, goal, 31.0, {"color": "red", "size": "medium"})
    assert reward == pytest.approx(3 / 5) and info["r_price"] is False
    unrelated = {
        **product,
        "query": "mug",
        "product_category": "Kitchen › Mugs",
        "title_nouns": ["mug"],
    }
    assert get_reward(unrelated, goal, 20.0, {})[1]["r_type"] == 0.0
    half = {**unrelated, "title_nouns": ["acme", "mug", "cup", "lid"]}  # 1 of 2 nouns
    assert get_reward(half, goal, 20.0, {})[1]["r_type"] == 1.0  # title score 0.5 > 0.2
    weak = {**unrelated, "title_nouns": ["acme"]}
    goal_many = {**goal, "name_nouns": ["acme", *"abcde"]}  # 1 of 6 nouns: no match
    assert get_reward(weak, goal_many, 20.0, {})[1]["r_type"] == 0.5
    goal_more = {**goal, "name_nouns": ["acme", *"abcdefghij"]}  # 1 of 11: below 0.1
    assert get_reward(weak, goal_more, 20.0, {})[1]["r_type"] == 0.1


def test_fuzzy_matching_is_thefuzz_token_set_ratio():
    # values checked against thefuzz / rapidfuzz 3.14
    assert token_set_ratio("large", "x-large") == 100
    assert token_set_ratio("Fragrance Free!", "fragrance free") == 100
    assert token_set_ratio("10 feet", "15 feet") == 86
    assert token_set_ratio("1.7 fl oz", "3.4 fl oz") == 78
    assert token_set_ratio("2 x 3 ft", "5 x 7 ft") == 75
    assert token_set_ratio("red", "blue") == 29
    assert token_set_ratio("", "red") == 0
    assert normalize_color("navy blue") == "blue" and normalize_color("light wash") == "ash"
    assert normalize_color("3 feet") == "3 feet"


def test_action_parsing_is_agentbench_then_webshop():
    assert parse_action("Thought:\nok\n\nAction:\nsearch[red shoes]") == ("search", "red shoes")
    assert parse_action("Action: click[< Prev]") == ("click", "< Prev")
    assert parse_action("action:\n  click[Buy Now] and more]") == ("click", "Buy Now")
    assert parse_action("Action: click[]") is None
    assert parse_action("Action: scroll[down]") is None


def test_prompt_layout_and_problem_identity():
    env = WebShopEnv(SAMPLE)
    tasks = env.tasks("train") + env.tasks("test")
    messages = env.prompt(tasks[0])
    assert messages[0]["role"] == "user" and messages[0]["content"].startswith("\nYou are web")
    assert messages[1] == {"role": "assistant", "content": "Ok.", "loss": False}
    demo = [m for m in messages if m["role"] == "assistant"]
    assert len(demo) == 5 and all(m["loss"] is False for m in demo)
    assert all("loss" not in m for m in messages if m["role"] == "user")
    assert messages[-1] == {"role": "user", "content": problem_text(tasks[0].payload)}
    assert Env.problem_of(messages) == messages[-1]["content"]
    later = [*messages, {"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]
    assert Env.problem_of(later) == messages[-1]["content"]
    assert env.reset(tasks[0]) == messages
    assert len({Env.problem_of(env.prompt(t)) for t in tasks}) == len(tasks)


def test_config_rejects_unknown_fields():
    with pytest.raises(ValidationError, match="not_a_field"):
        WebShopConfig(not_a_field=1)
    with pytest.raises(ValidationError):
        WebShopConfig(n_products=10)
