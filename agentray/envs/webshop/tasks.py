"""Goals (an instruction for one product with options) and seeded task generation."""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

from agentray.envs.generate import Redraw, generate_split_tasks
from agentray.envs.webshop.catalogue import Catalogue, catalogue, option_groups
from agentray.envs.webshop.config import PRICE_RANGE, WebShopConfig
from agentray.envs.webshop.expert import expert_choice
from agentray.envs.webshop.pages import problem_text
from agentray.envs.webshop.score import normalize_color, token_set_ratio
from agentray.envs.webshop.vocabulary import PRODUCT_TYPES
from agentray.types import TaskSpec

_OPENERS = (
    "i need",
    "i am looking for",
    "i'm looking for",
    "i want",
    "find me",
    "i would like",
    "show me",
    "i'd like to buy",
)


_OPTION_PHRASES = {
    "size": ("in {v} size", "in size {v}", "in the {v} size"),
    "color": ("in {v} color", "in {v}", "in the color {v}"),
    "flavor name": ("in {v} flavor", "with {v} flavor"),
    "scent": ("with {v} scent", "in {v} scent"),
    "style": ("in {v} style", "in the {v} style"),
}


def distinct_options(product: dict[str, Any]) -> dict[str, list[str]]:
    """Per option group, the values the reward can tell apart from every other value.

    A goal only names such values, so buying the product with another option scores less.
    """
    values = list(option_groups(product))
    out: dict[str, list[str]] = {}
    for name, group in product["options"].items():
        out[name] = [
            v
            for v in group
            if all(
                token_set_ratio(normalize_color(u), normalize_color(v)) <= 85
                for u in values
                if u != v
            )
        ]
    return out


def _article(ptype_article: str, next_word: str) -> str:
    if ptype_article in ("some", "a pair of"):
        return ptype_article
    return "an" if next_word[0] in "aeiou" else "a"


def make_goal(
    rng: random.Random, cat: Catalogue, max_attributes: int, max_options: int
) -> dict[str, Any]:
    """A WebShop human goal (``get_human_goals``) for one product of the catalogue."""
    product = rng.choice(cat.products)
    ptype = next(t for t in PRODUCT_TYPES if t.name == product["query"])
    n_attr = rng.randint(1, min(max_attributes, len(product["Attributes"])))
    attributes = rng.sample(product["Attributes"], n_attr)
    eligible = {k: v for k, v in distinct_options(product).items() if v}
    n_opt = min(len(eligible), max_options, rng.choice((0, 1, 1, 2, 2, 3)))
    groups = rng.sample(sorted(eligible), n_opt)
    goal_options = [rng.choice(eligible[g]) for g in groups]

    words = ", ".join(attributes)
    if len(attributes) > 1 and rng.random() < 0.6:
        words = ", ".join(attributes[:-1]) + " and " + attributes[-1]
    text = f"{rng.choice(_OPENERS)} {_article(ptype.article, words)} {words} {ptype.name}"
    for group, value in zip(groups, goal_options, strict=True):
        phrases = _OPTION_PHRASES.get(group, ("with {g} {v}",))
        text += " " + rng.choice(phrases).format(v=value, g=group)
    price_range = [p for p in PRICE_RANGE if p > product["price"]][:4]
    if len(price_range) < 2:
        raise Redraw
    _, price_upper = sorted(rng.sample(price_range, 2))
    return {
        "asin": product["asin"],
        "category": product["category"],
        "query": product["query"],
        "name": product["Title"],
        "name_nouns": product["title_nouns"],
        "product_category": product["product_category"],
        "instruction_text": text.strip(".") + f", and price lower than {price_upper:.2f} dollars",
        "attributes": attributes,
        "price_upper": price_upper,
        "goal_options": goal_options,
    }


@lru_cache(maxsize=16)
def all_tasks(config_json: str) -> dict[str, list[TaskSpec]]:
    config = WebShopConfig.model_validate_json(config_json)
    cat = catalogue(config.seed, config.n_products)

    def make_payload(rng: random.Random) -> dict[str, Any]:
        goal = make_goal(rng, cat, config.max_goal_attributes, config.max_goal_options)
        if expert_choice(cat, goal) is None:  # the target is not found by its own words
            raise Redraw
        return goal

    return generate_split_tasks("webshop", config, make_payload, problem_text)
