"""Generated web pages: element trees, sites, steps with candidate elements."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

OPS = ("CLICK", "TYPE", "SELECT")


MAX_CHOICE_TOKENS = 10  # MindAct shows the first 10 tokens of each candidate


@dataclass
class Node:
    """One element of a cleaned page. ``key`` marks an interactive element (a candidate)."""

    tag: str
    meta: str = ""  # attribute values as MindAct keeps them (lower case, no names)
    text: str = ""
    children: list[Node] = field(default_factory=list)
    key: str | None = None
    role: str = ""  # shown in the action history: [button], [link], [textbox], ...
    label: str = ""

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()


def render(node: Node, ids: dict[str, int]) -> str:
    """MindAct's tree representation: ``<tag id=k meta> text children </tag>``."""
    head = node.tag
    if node.key in ids:
        head += f" id={ids[node.key]}"
    if node.meta:
        head += f" {node.meta}"
    inner = ([node.text] if node.text else []) + [render(c, ids) for c in node.children]
    if not inner:
        return f"<{head} />"
    return f"<{head}> {' '.join(inner)} </{node.tag}>"


def box(tag: str, *children: Node, meta: str = "") -> Node:
    return Node(tag, meta, children=list(children))


def txt(tag: str, text: str, meta: str = "") -> Node:
    return Node(tag, meta, text)


def link(key: str, text: str, meta: str = "") -> Node:
    return Node("a", meta, text, key=key, role="link", label=text)


def button(key: str, text: str, meta: str = "button", label: str = "") -> Node:
    return Node("button", meta, text, key=key, role="button", label=label or text)


def textbox(key: str, label: str, value: str = "", role: str = "textbox") -> Node:
    kind = "search" if role == "searchbox" else "text"
    meta = " ".join(p for p in (kind, label.lower(), value.lower()) if p)
    return Node("input", meta, key=key, role=role, label=label)


def select(key: str, label: str, options: list[str], selected: str) -> Node:
    opts = [Node("option", o.lower() + (" true" if o == selected else ""), o) for o in options]
    return Node("select", label.lower(), children=opts, key=key, role="combobox", label=label)


def checkbox(key: str, label: str, checked: bool = False) -> Node:
    meta = f"checkbox {label.lower()}" + (" true" if checked else "")
    return Node("input", meta, key=key, role="checkbox", label=label)


def action_repr(node: Node, op: str, value: str) -> str:
    """Mind2Web's ``action_reprs``: ``[role]  label -> OP: value``."""
    label = node.label if len(node.label) <= 50 else node.label[:50] + "..."
    return f"[{node.role}]  {label} -> {op}" + (f": {value}" if op != "CLICK" else "")


class Site:
    """The chrome every page of one task shares: header with navigation, footer, a banner."""

    def __init__(self, rng: random.Random, names: tuple[str, ...], nav: str) -> None:
        self.name = rng.choice(names)
        words = rng.sample(nav.split(), rng.randint(3, min(5, len(nav.split()))))
        links = [link(f"nav{i}", w.replace("-", " ")) for i, w in enumerate(words)]
        self.header = box(
            "header",
            link("home", "", meta=f"{self.name.lower()} home"),
            box("nav", *links, meta="navigation"),
            link("signin", "Sign in"),
            meta="banner",
        )
        feet = [link(f"foot{i}", w) for i, w in enumerate(rng.sample(_FOOTER, rng.randint(3, 5)))]
        self.footer = box("footer", box("ul", *feet), meta="contentinfo")
        self.banner = []
        if rng.random() < 0.3:
            notice = box("div", txt("p", "We use cookies."), button("cookies", "Accept all"))
            self.banner = [notice]

    def page(self, title: str, *main: Node) -> Node:
        body = box("main", txt("h1", title), *main, meta="main")
        return box("html", box("div", self.header, body, self.footer, *self.banner))


@dataclass
class Step:
    page: Node
    gold: str  # key of the gold element
    op: str
    value: str
    thought: str


def _distractors(rng: random.Random, step: Step, n: int) -> list[str]:
    """Mostly elements of the page's main content (MindAct's ranker proposes relevant
    elements), the rest from the header, footer and banner."""
    main = next(node for node in step.page.walk() if node.tag == "main")
    inside = [node.key for node in main.walk() if node.key and node.key != step.gold]
    outside = [
        node.key for node in step.page.walk() if node.key and node.key not in (*inside, step.gold)
    ]
    hard = min(len(inside), rng.randint((n + 1) // 2, n))
    picked = rng.sample(inside, hard)
    picked += rng.sample(outside, min(len(outside), n - hard))
    rest = [k for k in inside if k not in picked]
    return picked + rng.sample(rest, min(len(rest), n - len(picked)))


def finalize_step(rng: random.Random, step: Step, n_candidates: int) -> dict[str, Any]:
    """Draw the distractors, number the candidates, render the page and the choices."""
    nodes = {n.key: n for n in step.page.walk() if n.key}
    keys = [n.key for n in step.page.walk() if n.key]
    if len(nodes) != len(keys) or step.gold not in nodes:
        raise AssertionError(f"bad page: duplicate keys or no gold {step.gold!r}")
    candidates = [*_distractors(rng, step, n_candidates - 1), step.gold]
    rng.shuffle(candidates)
    ids = {k: i for i, k in enumerate(candidates)}
    choices = [" ".join(render(nodes[k], ids).split()[:MAX_CHOICE_TOKENS]) for k in candidates]
    return {
        "html": render(step.page, ids),
        "choices": choices,
        "answer": candidates.index(step.gold),
        "op": step.op,
        "value": step.value,
        "repr": action_repr(nodes[step.gold], step.op, step.value),
        "thought": step.thought,
    }


_FOOTER = (
    "About us",
    "Careers",
    "Privacy policy",
    "Terms of use",
    "Help center",
    "Accessibility",
    "Gift cards",
    "Contact us",
)


class Trail:
    """The gold steps of one task, in order."""

    def __init__(self) -> None:
        self.steps: list[Step] = []

    def click(self, page: Node, key: str, thought: str) -> None:
        self.steps.append(Step(page, key, "CLICK", "", thought))

    def type(self, page: Node, key: str, value: str, thought: str) -> None:
        self.steps.append(Step(page, key, "TYPE", value, thought))

    def select(self, page: Node, key: str, value: str, thought: str) -> None:
        self.steps.append(Step(page, key, "SELECT", value, thought))


Template = Callable[[random.Random], tuple[str, str, list[Step]]]
