"""A shopping session's pages as text, and the action grammar."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agentray.envs.webshop.catalogue import Catalogue
from agentray.envs.webshop.config import (
    BACK_TO_SEARCH,
    END_BUTTON,
    NEXT_PAGE,
    PREV_PAGE,
    PRODUCT_WINDOW,
    SUB_PAGES,
)


def observation_text(page: str, clickables: list[str], has_search_bar: bool) -> str:
    """AgentBench's user turn for one page."""
    available = {"has_search_bar": has_search_bar, "clickables": clickables}
    return f"Observation:\n{page}\n\nAvailable Actions:\n{available}"


def problem_text(payload: dict[str, Any]) -> str:
    """The first observation: the search page with the instruction."""
    page = " [SEP] ".join(["WebShop", "Instruction:", payload["instruction_text"], "Search"])
    return observation_text(page, ["search"], True)


@dataclass
class Session:
    """One episode's browser state (WebShop's SimServer session + SimBrowser page)."""

    goal: dict[str, Any]
    page: str = "search"  # search | results | item | sub | done
    keywords: str = ""
    hits: list[str] = field(default_factory=list)
    page_num: int = 1
    asin: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    sub_page: str = ""


def render(session: Session, cat: Catalogue) -> tuple[str, dict[str, tuple[str, str]]]:
    """The page's [SEP] text and its clickables: key -> (kind, detail), in page order."""
    head = ["Instruction:", session.goal["instruction_text"]]
    back = {"back to search": ("button", BACK_TO_SEARCH)}
    if session.page == "search":
        text = " [SEP] ".join(["WebShop", *head, "Search"])
        return text, {"search": ("button", "Search")}
    if session.page == "results":
        total = len(session.hits)
        parts = [*head, BACK_TO_SEARCH, f"Page {session.page_num} (Total results: {total})"]
        clickables = dict(back)
        if session.page_num > 1:
            parts.append(PREV_PAGE)
            clickables["< prev"] = ("button", PREV_PAGE)
        if session.page_num * PRODUCT_WINDOW < total:
            parts.append(NEXT_PAGE)
            clickables["next >"] = ("button", NEXT_PAGE)
        start = (session.page_num - 1) * PRODUCT_WINDOW
        for asin in session.hits[start : start + PRODUCT_WINDOW]:
            product = cat.by_asin[asin]
            parts += [asin, product["Title"], product["Price"]]
            clickables[asin.lower()] = ("product", asin)
        return " [SEP] ".join(parts), clickables
    product = cat.by_asin[session.asin]
    parts = [*head, BACK_TO_SEARCH, PREV_PAGE]
    clickables = {**back, "< prev": ("button", PREV_PAGE)}
    if session.page == "sub":
        parts += _sub_page_text(product, session.sub_page)
        return " [SEP] ".join(parts), clickables
    buttons = [*SUB_PAGES, END_BUTTON]
    clickables.update({b.lower(): ("button", b) for b in buttons})
    for name, values in product["options"].items():
        parts += [name, *values]
        clickables.update({v: ("option", name) for v in values})
    parts += [product["Title"], f"Price: {product['Price']}", f"Rating: {product['Rating']}"]
    return " [SEP] ".join(parts + buttons), clickables


def _sub_page_text(product: dict[str, Any], sub_page: str) -> list[str]:
    if sub_page == "Description":
        return [product["Description"]]
    if sub_page == "Features":
        return list(product["BulletPoints"]) or ["No Features"]
    if not product["Reviews"]:
        return ["No reviews found"]
    return [
        part for r in product["Reviews"] for part in (f'"{r["title"]}"', str(r["score"]), r["body"])
    ]


def parse_action(text: str) -> tuple[str, str] | None:
    """AgentBench's extraction then WebShop's ``parse_action``: (name, argument) or None."""
    found = re.search(r"[Aa]ction: *\n* *((search|click)\[.+?])", text)
    if found is None:
        return None
    name, arg = re.match(r"(.+)\[(.+)\]", found.group(1)).groups()
    return name, arg
