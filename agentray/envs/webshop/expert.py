"""The scripted expert: search, pick the product, its options, buy."""

from __future__ import annotations

from typing import Any

from agentray.envs.webshop.catalogue import Catalogue, option_groups
from agentray.envs.webshop.config import END_BUTTON, NEXT_PAGE, PRODUCT_WINDOW
from agentray.envs.webshop.score import get_reward


def expert_query(goal: dict[str, Any]) -> str:
    """The instruction's key words: attributes, product type, options."""
    return " ".join([*goal["attributes"], goal["query"], *goal["goal_options"]])


def satisfies(product: dict[str, Any], goal: dict[str, Any]) -> bool:
    """Buying ``product`` with the goal's options (all on offer) earns reward 1."""
    groups = option_groups(product)
    if any(v not in groups for v in goal["goal_options"]):
        return False
    options = {groups[v]: v for v in goal["goal_options"]}
    return get_reward(product, goal, product["price"], options)[0] == 1.0


def expert_choice(cat: Catalogue, goal: dict[str, Any]) -> tuple[str, list[str], int] | None:
    """(query, its results, index of the first result that satisfies the goal) or None.

    The goal's own product always satisfies it; an earlier result that does too is bought
    instead, as a shopper would.
    """
    query = expert_query(goal)
    hits = cat.search(query)
    if goal["asin"] not in hits:
        return None
    rank = next(i for i, asin in enumerate(hits) if satisfies(cat.by_asin[asin], goal))
    return query, hits, rank


def expert_plan(cat: Catalogue, goal: dict[str, Any]) -> list[str] | None:
    """Search the goal's words, page to the product, open it, pick the options, buy."""
    choice = expert_choice(cat, goal)
    if choice is None:
        return None
    query, hits, rank = choice
    product = cat.by_asin[hits[rank]]
    actions = [
        "Thought:\nI think I should use the search bar to look for the product I need."
        f"\n\nAction:\nsearch[{query}]"
    ]
    actions += [
        "Thought:\nI think none of the products on this page is the one I need, so I should go "
        f"to the next page of results.\n\nAction:\nclick[{NEXT_PAGE}]"
    ] * (rank // PRODUCT_WINDOW)
    actions.append(
        f"Thought:\nI think {product['asin']} is the {goal['query']} I need, and its price "
        f"{product['Price']} is lower than {goal['price_upper']:.2f} dollars. I should click on "
        f"it.\n\nAction:\nclick[{product['asin']}]"
    )
    groups = option_groups(product)
    actions += [
        f"Thought:\nI think I should click on the '{v}' option to select the {groups[v]} I "
        f"need.\n\nAction:\nclick[{v}]"
        for v in goal["goal_options"]
    ]
    actions.append(
        "Thought:\nI think I should click on the 'Buy Now' button to purchase the product."
        f"\n\nAction:\nclick[{END_BUTTON}]"
    )
    return actions
