"""The Mind2Web family: multi-step web tasks over generated HTML snapshots, MindAct-style.

Each task is one goal on one generated website (flight search, shopping, restaurant booking,
car rental, hotels, movie tickets, job search) and a gold action sequence of 3-8 steps over a
sequence of page snapshots. At every step the agent sees what MindAct's multiple-choice
prompt shows (Mind2Web ``src/action_prediction``, AgentBench's Mind2Web task): the cleaned
page (the candidate elements carry ``id=k``), the task, the previous actions and the choices
``A. None of the above`` then ``B.``... (the gold element shuffled among distractors of the
same page). It answers ``Answer: C.\\nAction: TYPE\\nValue: New York`` (a ``Thought:`` line
before it is allowed; ``Value`` only for TYPE and SELECT).

Scoring is Mind2Web's offline evaluation, as AgentBench computes it: per step, element
accuracy (the chosen letter is the gold element) and operation F1 (token-set F1 of
``"OP value"`` against the gold); a step succeeds when the element is right and the F1 is 1.
The episode follows the gold trajectory whatever the agent answered (teacher forcing: the
next page and the previous actions are the gold ones), so every step is scored, and the
reward is the step success rate. A reply with no ``Answer: <letter>`` counts, as AgentBench's
parser does (it defaults to "A"), as a failed step and the episode goes on; AgentBench never
ends a Mind2Web sample early, so ``max_invalid_streak`` is 0 (off) by default, and a positive
value ends the episode with AGENT_INVALID_ACTION after that many such replies in a row.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from typing import Any, ClassVar

from pydantic import Field, model_validator

from agentray.envs.base import (
    Env,
    FamilyConfig,
    Redraw,
    generate_split_tasks,
    no_episode_result,
    split_tasks,
)
from agentray.types import Message, Status, StepResult, TaskSpec

# MindAct's system prompt (llm_prompt.json), verbatim, then the answer format in words.
INSTRUCTION = (
    "You are a helpful assistant that is great at website design, navigation, and executing "
    "tasks for the user.\n\n"
    "Step by step, I will show you a simplified HTML page, the task, the previous actions and "
    "a list of choices. Pick the element to interact with next and the operation (CLICK, TYPE "
    "or SELECT); for TYPE and SELECT also give the text to type or the option to select. "
    "Answer in this format:\n"
    "Thought: your reasoning\nAnswer: B.\nAction: TYPE\nValue: the text"
)
OPS = ("CLICK", "TYPE", "SELECT")
MAX_CHOICE_TOKENS = 10  # MindAct shows the first 10 tokens of each candidate


class Mind2WebConfig(FamilyConfig):
    max_rounds: int = Field(
        10,
        ge=1,
        description="agent turns at most; each turn scores one step, so it only bites below "
        "the task's step count (max_steps + slack)",
    )
    n_candidates: int = Field(
        5, ge=2, le=25, description="candidate elements per step, the gold one included"
    )
    min_steps: int = Field(3, ge=1, description="fewest gold steps in a task")
    max_steps: int = Field(8, ge=1, description="most gold steps in a task")
    previous_k: int = Field(5, ge=0, description="previous actions shown (MindAct: 5)")
    n_shots: int = Field(3, ge=0, le=3, description="demonstration exchanges in the prompt")
    max_invalid_streak: int = Field(
        0, ge=0, description="end after this many unparseable replies in a row (0: never)"
    )

    @model_validator(mode="after")
    def _step_range(self) -> Mind2WebConfig:
        if self.min_steps > self.max_steps:
            raise ValueError(f"min_steps {self.min_steps} > max_steps {self.max_steps}")
        return self


# --------------------------------------------------------------------------- pages


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


# --------------------------------------------------------------------------- vocabulary


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


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
CITIES = (
    ("Boston", "MA", "BOS"),
    ("Denver", "CO", "DEN"),
    ("Austin", "TX", "AUS"),
    ("Seattle", "WA", "SEA"),
    ("Chicago", "IL", "ORD"),
    ("Miami", "FL", "MIA"),
    ("Phoenix", "AZ", "PHX"),
    ("Atlanta", "GA", "ATL"),
    ("Portland", "OR", "PDX"),
    ("Nashville", "TN", "BNA"),
    ("San Diego", "CA", "SAN"),
    ("Orlando", "FL", "MCO"),
    ("Dallas", "TX", "DFW"),
    ("New York", "NY", "JFK"),
    ("Las Vegas", "NV", "LAS"),
    ("Minneapolis", "MN", "MSP"),
    ("Detroit", "MI", "DTW"),
    ("Philadelphia", "PA", "PHL"),
    ("Charlotte", "NC", "CLT"),
    ("Salt Lake City", "UT", "SLC"),
)
_AIRLINES = _words("Delta United Alaska JetBlue Southwest Frontier Spirit Hawaiian")
_ADJ = _words("Golden Blue Rustic Little Silver Green Old Royal Urban Coastal Velvet Amber")
_NOUN = _words("Fork Olive Table Lantern Garden Spoon Harbor Oven Vine Pepper Maple Anchor")
_EATERY = _words("Bistro Kitchen Grill Trattoria Cafe Tavern Brasserie Diner")
_LODGING = ("Hotel", "Inn", "Suites", "Resort", "Lodge")
_PRODUCTS = {
    "running shoes": "shoe",
    "hiking boots": "shoe",
    "sneakers": "shoe",
    "rain jacket": "cloth",
    "hoodie": "cloth",
    "wool sweater": "cloth",
    "denim jacket": "cloth",
    "yoga pants": "cloth",
    "t-shirt": "cloth",
}
_BRANDS = _words("Northpeak Velo Stride Kinetic Arbor Lumen Summit Tidal")
_COLORS = _words("black white navy red green grey blue orange")
_SIZES = {"shoe": ("7", "8", "9", "10", "11", "12"), "cloth": ("XS", "S", "M", "L", "XL")}
_CARS = {
    "Economy": ("Kia Rio", "Nissan Versa"),
    "Compact": ("Toyota Corolla", "Ford Focus"),
    "Midsize": ("Hyundai Sonata", "Mazda 6"),
    "SUV": ("Ford Explorer", "Toyota RAV4"),
    "Minivan": ("Chrysler Pacifica", "Honda Odyssey"),
    "Luxury": ("BMW 5 Series", "Audi A6"),
    "Convertible": ("Ford Mustang Convertible", "Mini Cooper Convertible"),
}
_MOVIE_ADJ = _words("Silent Hidden Crimson Broken Distant Northern Paper Iron Glass Midnight Last")
_MOVIE_NOUN = _words("River Garden Empire Tide Compass Harbor Signal Moon Forest City Light Echo")
_CINEMA_BRANDS = ("Regal", "AMC", "Cinemark", "Alamo", "Landmark")
_CINEMA_PLACES = _words("Riverside Downtown Union Eastgate Westfield Lakeside Harbor Plaza")
_JOBS = (
    "Data Analyst",
    "Software Engineer",
    "Product Manager",
    "Graphic Designer",
    "Nurse Practitioner",
    "Sales Associate",
    "Accountant",
    "Marketing Coordinator",
)
_COMPANIES = _words("Acme Globex Initech Umbrella Stark Hooli Vandelay Wonka Soylent Cyberdyne")
_JOB_TYPES = ("Full-time", "Part-time", "Contract", "Internship")
_CUISINES = ("Italian", "French", "Thai", "Mexican", "Japanese", "Greek")
_TIMES = tuple(f"{h}:{m:02d} PM" for h in range(5, 10) for m in (0, 15, 30, 45))


def _day(rng: random.Random) -> date:
    return date(2024, 1, 1) + timedelta(days=rng.randint(30, 330))


# Own names rather than strftime, whose %A / %B follow the process locale.
_WEEKDAYS = _words("Monday Tuesday Wednesday Thursday Friday Saturday Sunday")
_MONTHS = _words(
    "January February March April May June July August September October November December"
)


def _md(d: date) -> str:
    return f"{_MONTHS[d.month - 1]} {d.day}"  # March 15


def _long(d: date) -> str:
    return f"{_WEEKDAYS[d.weekday()]}, {_md(d)}"  # Friday, March 15


def _short(d: date) -> str:
    return f"{_WEEKDAYS[d.weekday()][:3]}, {_MONTHS[d.month - 1][:3]} {d.day}"  # Fri, Mar 15


def _day_meta(d: date) -> str:
    return f"{_WEEKDAYS[d.weekday()]} {_md(d)}, {d.year}".lower()  # friday march 15, 2024


def _calendar(rng: random.Random, days: list[date], marks: dict[date, str]) -> Node:
    """A two-week date grid around ``days`` (the days to pick must lie within it)."""
    start = min(days) - timedelta(days=rng.randint(0, max(0, 13 - (max(days) - min(days)).days)))
    cells = []
    for i in range(14):
        d = start + timedelta(days=i)
        meta = _day_meta(d) + (f" {marks[d]}" if d in marks else "")
        label = f"{_short(d).replace(',', '')} {d.year}"
        cells.append(button(f"day{i}", str(d.day), meta=meta, label=label))
    return box(
        "div", txt("span", f"{_MONTHS[start.month - 1]} {start.year}"), *cells, meta="grid calendar"
    )


def _day_key(calendar: Node, d: date) -> str:
    needle = _day_meta(d)
    return next(c.key for c in calendar.walk() if c.key and c.meta.startswith(needle))


def _suggestions(prefix: str, options: list[str]) -> Node:
    """An autocomplete list; Mind2Web records clicks on its entries as ``[option]``."""
    items = [
        box("li", Node("button", "option", o, key=f"{prefix}{i}", role="option", label=o))
        for i, o in enumerate(options)
    ]
    return box("ul", *items, meta="listbox")


# --------------------------------------------------------------------------- templates


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


def _flights(rng: random.Random) -> tuple[str, str, list[Step]]:
    site = Site(rng, ("SkyWays", "AeroJet", "FlyNow"), "Book Trips Deals Travel-info Miles")
    (a, a_st, a_code), (b, b_st, b_code) = rng.sample(CITIES, 2)
    day, adults = _day(rng), rng.choice((1, 1, 2, 3, 4))
    criterion = rng.choice(("cheapest", "earliest", "cheapest nonstop"))
    counts = ["1 Adult", *(f"{n} Adults" for n in range(2, 7))]
    verb = rng.choice(("Find", "Book", "Choose"))
    goal = (
        f"{verb} the {criterion} one-way flight from {a} to {b} on {_md(day)} "
        f"for {counts[adults - 1].lower()}."
    )
    others = [c for c in CITIES if c[0] not in (a, b)]
    suggest = {
        name: rng.sample([f"{c}, {s}, US ({k})" for c, s, k in [gold, *rng.sample(others, 2)]], 3)
        for name, gold in (("from", (a, a_st, a_code)), ("to", (b, b_st, b_code)))
    }
    state: dict[str, Any] = {"trip": rng.choice(("Round trip", "One-way")), "from": "", "to": ""}
    state.update(open=None, day=None, adults="1 Adult")
    autocomplete, cal_seed = rng.random() < 0.5, rng.random()

    def form() -> Node:
        tabs = [
            button(f"trip{i}", t, meta="tab" + (" selected" if state["trip"] == t else ""))
            for i, t in enumerate(("Round trip", "One-way"))
        ]
        fields = [box("div", *tabs, meta="tablist")]
        for name in ("from", "to"):
            fields.append(
                textbox(name, f"{name.title()}: city or airport", state[name], "combobox")
            )
            if state["open"] == name:
                fields.append(_suggestions(f"{name}_opt", suggest[name]))
        marks = {state["day"]: "selected"} if state["day"] else {}
        fields.append(_calendar(random.Random(cal_seed), [day], marks))
        fields.append(select("adults", "Passengers", counts, state["adults"]))
        fields.append(button("search", "Search flights", meta="submit"))
        return site.page("Where to next?", box("form", *fields, meta="search"))

    trail = Trail()
    if state["trip"] == "Round trip":
        trail.click(form(), "trip1", "The flight is one-way but the form is set to round trip.")
        state["trip"] = "One-way"
    for name, city in (("from", a), ("to", b)):
        trail.type(form(), name, city, f"I type {city} into the {name.title()} field.")
        state[name] = city
        if autocomplete:
            state["open"] = name
            target = next(o for o in suggest[name] if o.startswith(f"{city},"))
            key = f"{name}_opt{suggest[name].index(target)}"
            trail.click(form(), key, f"The suggestions list {target}, the city I typed.")
            state["open"], state[name] = None, target
    page = form()
    trail.click(page, _day_key(page, day), f"The flight is on {_long(day)}; I click that day.")
    state["day"] = day
    if adults > 1:
        who = counts[adults - 1]
        trail.select(form(), "adults", who, f"There are {adults} travelers, so I select {who}.")
        state["adults"] = who
    trail.click(form(), "search", "The search form is complete, so I click Search flights.")
    trail.steps.append(_flight_results(rng, site, a_code, b_code, criterion))
    return "flights", goal, trail.steps


def _flight_results(rng: random.Random, site: Site, a: str, b: str, criterion: str) -> Step:
    n = rng.randint(4, 6)
    airlines, prices = rng.sample(_AIRLINES, n), rng.sample(range(89, 700), n)
    departs = rng.sample(range(6 * 60, 22 * 60, 5), n)
    stops = [rng.choice(("Nonstop", "1 stop", "1 stop", "2 stops")) for _ in range(n)]
    if "Nonstop" not in stops:
        stops[rng.randrange(n)] = "Nonstop"
    pool = [i for i in range(n) if "nonstop" not in criterion or stops[i] == "Nonstop"]
    best = min(pool, key=lambda i: departs[i] if criterion == "earliest" else prices[i])
    clock = [f"{m // 60 % 12 or 12}:{m % 60:02d} {'AM' if m < 720 else 'PM'}" for m in departs]
    rows = [
        box(
            "div",
            txt("span", airlines[i]),
            txt("span", f"{clock[i]} {a} - {b}"),
            txt("span", stops[i]),
            txt("span", f"${prices[i]}"),
            button(f"pick{i}", "Select", meta="button select flight"),
            meta="listitem",
        )
        for i in range(n)
    ]
    filters = box(
        "div",
        select("sort", "Sort by", ["Recommended", "Price", "Departure time"], "Recommended"),
        checkbox("nonstop", "Nonstop only"),
        button("modify", "Modify search"),
    )
    page = site.page(f"Flights from {a} to {b}", filters, box("div", *rows, meta="list"))
    thought = (
        f"The {criterion} flight is {airlines[best]} at {clock[best]} "
        f"({stops[best].lower()}, ${prices[best]}), so I click its Select button."
    )
    return Step(page, f"pick{best}", "CLICK", "", thought)


def _shopping(rng: random.Random) -> tuple[str, str, list[Step]]:
    site = Site(rng, ("ShopMart", "CartCity", "BuyMore"), "Women Men Kids Sale New-arrivals Brands")
    product = rng.choice(list(_PRODUCTS))
    sizes = _SIZES[_PRODUCTS[product]]
    size, color, qty = rng.choice(sizes), rng.choice(_COLORS), rng.choice((1, 1, 1, 2, 3))
    n = rng.randint(4, 6)
    brands, prices = rng.sample(_BRANDS, n), rng.sample(range(19, 220), n)
    colors = [color, *(rng.choice(_COLORS) for _ in range(n - 1))]
    names = [f"{brands[i]} {colors[i].capitalize()} {product.title()}" for i in range(n)]
    order = rng.sample(range(n), n)
    by_price = rng.random() < 0.5
    gold = min((i for i in range(n) if colors[i] == color), key=lambda i: prices[i])
    if not by_price:
        gold = rng.choice([i for i in range(n) if colors[i] == color])
    extra = f", quantity {qty}," if qty > 1 else ""
    goal = (
        f"Search for {product}, sort by price from low to high and add the cheapest {color} one "
        f"in size {size}{extra} to the cart."
        if by_price
        else f"Add the {brands[gold]} {product} in {color}, size {size}{extra} to the cart."
    )
    state = {"query": "", "sort": "Featured", "size": "Select a size", "qty": "1"}
    swatches = [color, *rng.sample([c for c in _COLORS if c != color], 2)]

    def home() -> Node:
        search = box(
            "form",
            textbox("q", "Search products", state["query"], "searchbox"),
            button("go", "", meta="submit search", label="Search"),
            meta="search",
        )
        return site.page(
            site.name, search, box("div", txt("h2", "Sale"), link("promo", "Shop now"))
        )

    def results() -> Node:
        shown = order if state["sort"] == "Featured" else sorted(order, key=lambda i: prices[i])
        cards = [
            box("div", link(f"item{i}", names[i]), txt("span", f"${prices[i]}"), meta="listitem")
            for i in shown
        ]
        sorts = ["Featured", "Price: Low to High", "Price: High to Low", "Newest"]
        return site.page(
            f'Results for "{product}"',
            select("sort", "Sort by", sorts, state["sort"]),
            checkbox("instock", "In stock only"),
            box("div", *cards, meta="list"),
        )

    def item() -> Node:
        return site.page(
            names[gold],
            txt("span", f"${prices[gold]}"),
            box("div", *(button(f"swatch{i}", "", f"button {c}") for i, c in enumerate(swatches))),
            select("size", "Size", ["Select a size", *sizes], state["size"]),
            select("qty", "Quantity", [str(q) for q in range(1, 6)], state["qty"]),
            button("add", "Add to cart", meta="button add to cart"),
            button("wish", "Add to wish list"),
            link("reviews", "Read reviews"),
        )

    trail = Trail()
    trail.type(home(), "q", product, f"I type {product} into the search box.")
    state["query"] = product
    trail.click(home(), "go", "I click the search button to see the results.")
    if by_price:
        low = "Price: Low to High"
        trail.select(results(), "sort", low, f"The task asks to sort by price, so I select {low}.")
        state["sort"] = low
    why = f"the cheapest {color} one" if by_price else f"the {brands[gold]} {product} in {color}"
    trail.click(results(), f"item{gold}", f"{names[gold]} is {why}, so I open it.")
    trail.select(item(), "size", size, f"The task asks for size {size}.")
    state["size"] = size
    if qty > 1:
        trail.select(item(), "qty", str(qty), f"The task asks for quantity {qty}.")
        state["qty"] = str(qty)
    trail.click(item(), "add", "Everything is set, so I click Add to cart.")
    return "shopping", goal, trail.steps


def _restaurant(rng: random.Random) -> tuple[str, str, list[Step]]:
    site = Site(
        rng, ("TableNow", "DineSpot", "EatEasy"), "Restaurants Offers Near-me Gift-cards Blog"
    )
    names: list[str] = []
    while len(names) < 4:
        name = f"The {rng.choice(_ADJ)} {rng.choice(_NOUN)} {rng.choice(_EATERY)}"
        names += [name] if name not in names else []
    name, party, cuisine = names[0], rng.randint(1, 8), rng.choice(_CUISINES)
    names = rng.sample(names, 4)
    days = [_day(rng) + timedelta(days=i) for i in range(7)]
    day, time = rng.choice(days), rng.choice(_TIMES[2:-2])
    parties = ["1 person", *(f"{n} people" for n in range(2, 9))]
    goal = f"Book a table for {party} at {name} on {_long(day)} at {time}."
    want = {"party": parties[party - 1], "date": _short(day), "time": time}
    state = {"query": "", "open": False, "party": "2 people", "date": _short(days[0])}
    state["time"] = "7:00 PM"

    def home() -> Node:
        fields = [textbox("q", "Location, restaurant, or cuisine", state["query"], "searchbox")]
        fields.append(button("go", "Let's go"))
        if state["open"]:
            fields.append(_suggestions("hit", names))
        return site.page("Find your table for any occasion", box("form", *fields, meta="search"))

    def venue(slots: tuple[str, ...] = ()) -> Node:
        form = box(
            "form",
            select("party", "Party size", parties, state["party"]),
            select("date", "Date", [_short(d) for d in days], state["date"]),
            select("time", "Time", list(_TIMES), state["time"]),
            button("find", "Find a table"),
        )
        times = [box("div", *(button(f"slot{i}", s) for i, s in enumerate(slots)))] if slots else []
        about = box(
            "div", txt("p", f"{cuisine} cuisine."), link("menu", "Menu"), link("pics", "Photos")
        )
        return site.page(name, form, *times, about)

    trail = Trail()
    trail.type(home(), "q", name, f"I search for the restaurant {name}.")
    state["query"], state["open"] = name, True
    trail.click(home(), f"hit{names.index(name)}", f"{name} appears in the results.")
    for key, label in (("party", "party size"), ("date", "date"), ("time", "time")):
        if state[key] != want[key]:
            trail.select(venue(), key, want[key], f"The {label} must be {want[key]}.")
            state[key] = want[key]
    trail.click(venue(), "find", "The reservation details are set, so I click Find a table.")
    slots = _TIMES[_TIMES.index(time) - 2 : _TIMES.index(time) + 3]
    trail.click(venue(slots), f"slot{slots.index(time)}", f"The {time} slot is available.")
    return "restaurant", goal, trail.steps


def _car_rental(rng: random.Random) -> tuple[str, str, list[Step]]:
    site = Site(rng, ("RentRide", "DriveAway", "AutoHire"), "Reservations Vehicles Locations Deals")
    city, st, code = rng.choice(CITIES)
    other = rng.choice([c for c in CITIES if c[0] != city])
    airport, car = rng.random() < 0.5, rng.choice(list(_CARS))
    pick = _day(rng)
    back = pick + timedelta(days=rng.randint(2, 7))
    age = rng.choice((None, None, 21, 22, 23, 24))
    where = f"at the {city} airport" if airport else f"in downtown {city}"
    goal = f"Rent a {car.lower()} car {where} from {_md(pick)} to {_md(back)}" + (
        f" for a {age}-year-old driver." if age else "."
    )
    target = f"{city} Airport ({code})" if airport else f"{city} Downtown, {st}"
    places = [target, f"{city} Downtown, {st}" if airport else f"{city} Airport ({code})"]
    places = rng.sample([*places, f"{other[0]} Airport ({other[2]})"], 3)
    state: dict[str, Any] = {"where": "", "open": False, "marks": {}, "over25": True, "age": ""}
    cal_seed = rng.random()

    def form() -> Node:
        fields = [textbox("where", "Pick-up location", state["where"], "combobox")]
        if state["open"]:
            fields.append(_suggestions("loc", places))
        fields.append(_calendar(random.Random(cal_seed), [pick, back], state["marks"]))
        fields.append(checkbox("over25", "Driver aged 25 or older", state["over25"]))
        if not state["over25"]:
            fields.append(textbox("age", "Driver's age", state["age"]))
        fields.append(button("search", "Search cars", meta="submit"))
        return site.page("Reserve a vehicle", box("form", *fields, meta="search"))

    trail = Trail()
    trail.type(form(), "where", city, f"I type {city} as the pick-up location.")
    state.update(where=city, open=True)
    trail.click(form(), f"loc{places.index(target)}", f"The pick-up is {where}: {target}.")
    state.update(where=target, open=False)
    for d, what in ((pick, "pick-up"), (back, "return")):
        page = form()
        trail.click(page, _day_key(page, d), f"The {what} date is {_long(d)}; I click it.")
        state["marks"] = {**state["marks"], d: f"selected {what} date"}
    if age:
        trail.click(form(), "over25", f"The driver is {age}, so I uncheck the 25 or older box.")
        state["over25"] = False
        trail.type(form(), "age", str(age), f"I type the driver's age {age}.")
        state["age"] = str(age)
    trail.click(form(), "search", "The form is complete, so I click Search cars.")
    classes = rng.sample([car, *rng.sample([c for c in _CARS if c != car], 4)], 5)
    rows = [
        box(
            "div",
            txt("h3", c),
            txt("span", f"{rng.choice(_CARS[c])} or similar"),
            txt("span", f"${rng.randint(25, 190)}/day"),
            button(f"car{i}", "Select", meta="button select vehicle"),
            meta="listitem",
        )
        for i, c in enumerate(classes)
    ]
    sorter = select("sort", "Sort by", ["Recommended", "Price: Low to High"], "Recommended")
    page = site.page(f"Vehicles at {target}", sorter, box("div", *rows, meta="list"))
    trail.click(
        page, f"car{classes.index(car)}", f"I need a {car.lower()} car; I select that offer."
    )
    return "car_rental", goal, trail.steps


def _hotel(rng: random.Random) -> tuple[str, str, list[Step]]:
    site = Site(
        rng, ("StayFinder", "RoomRadar", "InnSeeker"), "Stays Flights Packages Deals Rewards"
    )
    city, st, _ = rng.choice(CITIES)
    checkin = _day(rng)
    checkout = checkin + timedelta(days=rng.randint(1, 5))
    adults, criterion = rng.randint(1, 4), rng.choice(("cheapest", "highest-rated"))
    breakfast = rng.random() < 0.5
    counts = ["1 adult", *(f"{n} adults" for n in range(2, 7))]
    perk = " with free breakfast" if breakfast else ""
    goal = (
        f"Find the {criterion} hotel{perk} in {city} from {_md(checkin)} "
        f"to {_md(checkout)} for {counts[adults - 1]}."
    )
    others = rng.sample([c for c in CITIES if c[0] != city], 2)
    places = rng.sample([f"{c}, {s}, United States" for c, s, _ in [(city, st, ""), *others]], 3)
    target = f"{city}, {st}, United States"
    state: dict[str, Any] = {"where": "", "open": False, "marks": {}, "guests": "2 adults"}
    state["breakfast"], cal_seed = False, rng.random()

    def form() -> Node:
        fields = [textbox("where", "Where are you going?", state["where"], "combobox")]
        if state["open"]:
            fields.append(_suggestions("place", places))
        fields.append(_calendar(random.Random(cal_seed), [checkin, checkout], state["marks"]))
        fields.append(select("guests", "Guests", counts, state["guests"]))
        fields.append(button("search", "Search", meta="submit"))
        return site.page("Find your next stay", box("form", *fields, meta="search"))

    trail = Trail()
    trail.type(form(), "where", city, f"I type the destination {city}.")
    state.update(where=city, open=True)
    trail.click(form(), f"place{places.index(target)}", f"I pick {target} from the suggestions.")
    state.update(where=target, open=False)
    for d, what in ((checkin, "check-in"), (checkout, "check-out")):
        page = form()
        trail.click(page, _day_key(page, d), f"The {what} date is {_long(d)}; I click it.")
        state["marks"] = {**state["marks"], d: f"selected {what}"}
    if counts[adults - 1] != state["guests"]:
        guests = counts[adults - 1]
        trail.select(form(), "guests", guests, f"The stay is for {guests}.")
        state["guests"] = guests
    trail.click(form(), "search", "The search is set, so I click Search.")
    n = rng.randint(4, 6)
    adjs, nouns = rng.sample(_ADJ, n), rng.sample(_NOUN, n)
    names = [f"{adjs[i]} {nouns[i]} {rng.choice(_LODGING)}" for i in range(n)]
    prices, ratings = rng.sample(range(79, 480), n), rng.sample(range(60, 99), n)
    has_bf = [rng.random() < 0.5 for _ in range(n)]
    has_bf[rng.randrange(n)] = True

    def results() -> Node:
        cards = [
            box(
                "div",
                txt("h3", names[i]),
                txt("span", f"{ratings[i] / 10:.1f} rating"),
                txt("span", "Free breakfast" if has_bf[i] else "Room only"),
                txt("span", f"${prices[i]} per night"),
                button(f"deal{i}", "See availability"),
                meta="listitem",
            )
            for i in range(n)
            if has_bf[i] or not state["breakfast"]
        ]
        filters = box(
            "div",
            checkbox("bf", "Free breakfast", state["breakfast"]),
            checkbox("pool", "Pool"),
            checkbox("cancel", "Free cancellation"),
        )
        return site.page(f"{city}: {n} properties found", filters, box("div", *cards, meta="list"))

    if breakfast:
        trail.click(results(), "bf", "The hotel must have free breakfast; I tick that filter.")
        state["breakfast"] = True
    pool = [i for i in range(n) if has_bf[i] or not breakfast]
    best = min(pool, key=lambda i: prices[i] if criterion == "cheapest" else -ratings[i])
    fact = f"${prices[best]} a night" if criterion == "cheapest" else f"{ratings[best] / 10:.1f}"
    thought = f"{names[best]} is the {criterion} option{perk} ({fact}), so I check availability."
    trail.click(results(), f"deal{best}", thought)
    return "hotel", goal, trail.steps


def _movies(rng: random.Random) -> tuple[str, str, list[Step]]:
    site = Site(rng, ("TicketHub", "ShowTime", "CineGo"), "Movies Theaters Events Offers Rewards")
    titles: list[str] = []
    while len(titles) < 4:
        title = f"The {rng.choice(_MOVIE_ADJ)} {rng.choice(_MOVIE_NOUN)}"
        titles += [title] if title not in titles else []
    movie, titles = titles[0], rng.sample(titles, 4)
    brands, places = rng.sample(_CINEMA_BRANDS, 4), rng.sample(_CINEMA_PLACES, 4)
    cinemas = [f"{b} {p}" for b, p in zip(brands, places, strict=True)]
    cinema, qty = rng.choice(cinemas), rng.randint(1, 6)
    days = [_day(rng) + timedelta(days=i) for i in range(5)]
    day, times = rng.choice(days), sorted(rng.sample(_TIMES, 5), key=_TIMES.index)
    time = rng.choice(times)
    tickets = f"{qty} ticket{'s' if qty > 1 else ''}"
    goal = f"Buy {tickets} for {movie} at {cinema} on {_long(day)} at {time}."
    state = {"query": "", "cinema": cinemas[0], "day": days[0], "qty": "1"}

    def search() -> Node:
        fields = [
            textbox("q", "Search movies", state["query"], "searchbox"),
            button("go", "Search"),
        ]
        if state["query"]:
            fields.append(
                box("ul", *(box("li", link(f"movie{i}", t)) for i, t in enumerate(titles)))
            )
        return site.page("Now playing", box("form", *fields, meta="search"))

    def showtimes() -> Node:
        tabs = [
            button(f"tab{i}", _short(d), meta="tab" + (" selected" if d == state["day"] else ""))
            for i, d in enumerate(days)
        ]
        return site.page(
            movie,
            select("cinema", "Theater", cinemas, state["cinema"]),
            box("div", *tabs, meta="tablist"),
            box("div", *(button(f"show{i}", t) for i, t in enumerate(times)), meta="list"),
            link("trailer", "Watch trailer"),
        )

    def checkout() -> Node:
        return site.page(
            f"{movie} at {cinema}",
            select("qty", "Tickets", [str(q) for q in range(1, 9)], state["qty"]),
            button("cont", "Continue"),
            link("back", "Change showtime"),
        )

    trail = Trail()
    trail.type(search(), "q", movie, f"I search for the movie {movie}.")
    state["query"] = movie
    trail.click(search(), f"movie{titles.index(movie)}", f"I click {movie} in the results.")
    if cinema != state["cinema"]:
        trail.select(showtimes(), "cinema", cinema, f"The tickets are for {cinema}.")
        state["cinema"] = cinema
    if day != state["day"]:
        trail.click(showtimes(), f"tab{days.index(day)}", f"The show is on {_long(day)}.")
        state["day"] = day
    trail.click(showtimes(), f"show{times.index(time)}", f"I click the {time} showtime.")
    if qty > 1:
        trail.select(checkout(), "qty", str(qty), f"I need {tickets}.")
        state["qty"] = str(qty)
    trail.click(checkout(), "cont", "The tickets are chosen, so I click Continue.")
    return "movies", goal, trail.steps


def _jobs(rng: random.Random) -> tuple[str, str, list[Step]]:
    site = Site(
        rng, ("JobBoard", "CareerLink", "HireHub"), "Jobs Companies Salaries Resume Employers"
    )
    title = rng.choice(_JOBS)
    city = rng.choice(CITIES)[0] if rng.random() < 0.6 else None
    kind = rng.choice((None, *_JOB_TYPES))
    companies = rng.sample(_COMPANIES, rng.randint(4, 5))
    company = rng.choice(companies)
    where = f" in {city}" if city else ""
    kind_text = f"{kind.lower()} " if kind else ""
    goal = f"Find {kind_text}{title} jobs{where} and open the posting from {company}."
    state: dict[str, Any] = {"what": "", "where": "", "kind": None}

    def home() -> Node:
        form = box(
            "form",
            textbox("what", "Job title, keywords, or company", state["what"]),
            textbox("where", "City or state", state["where"]),
            button("go", "Find jobs"),
            meta="search",
        )
        return site.page("Find your next job", form, link("upload", "Upload your resume"))

    def results() -> Node:
        boxes = [checkbox(f"type{i}", t, state["kind"] == t) for i, t in enumerate(_JOB_TYPES)]
        cards = [
            box("div", link(f"job{i}", f"{title} - {c}"), txt("span", city or "Remote"))
            for i, c in enumerate(companies)
        ]
        return site.page(
            f"{title} jobs{where}", box("div", *boxes), box("div", *cards, meta="list")
        )

    trail = Trail()
    trail.type(home(), "what", title, f"I type the job title {title}.")
    state["what"] = title
    if city:
        trail.type(home(), "where", city, f"The jobs must be in {city}; I type it as the location.")
        state["where"] = city
    trail.click(home(), "go", "I click Find jobs to search.")
    if kind:
        trail.click(results(), f"type{_JOB_TYPES.index(kind)}", f"I tick the {kind} filter.")
        state["kind"] = kind
    trail.click(results(), f"job{companies.index(company)}", f"I open the posting from {company}.")
    return "jobs", goal, trail.steps


TEMPLATES: tuple[Template, ...] = (
    _flights,
    _shopping,
    _restaurant,
    _car_rental,
    _hotel,
    _movies,
    _jobs,
)


# --------------------------------------------------------------------------- prompts


def step_prompt(payload: dict[str, Any], k: int, previous_k: int = 5) -> str:
    """MindAct's multiple-choice prompt for step ``k`` (AgentBench's ``'''html'''`` framing)."""
    step = payload["steps"][k]
    history = [s["repr"] for s in payload["steps"][:k]]
    history = history[len(history) - previous_k :] if previous_k else []
    choices = "\n".join(f"{chr(66 + i)}. {c}" for i, c in enumerate(step["choices"]))
    return (
        f"'''\n{step['html']}\n'''\n\n"
        "Based on the HTML webpage above, try to complete the following task:\n"
        f"Task: {payload['goal']}\n"
        f"Previous actions:\n{chr(10).join(history) if history else 'None'}\n"
        "What should be the next action? Please select from the following choices "
        "(If the correct action is not in the page above, please select A. 'None of the above'):\n\n"
        f"A. None of the above\n{choices}"
    )


def problem_text(payload: dict[str, Any]) -> str:
    return step_prompt(payload, 0)


def gold_reply(step: dict[str, Any]) -> str:
    """The expert's answer to one step: a thought, then MindAct's answer format."""
    reply = f"Thought: {step['thought']}\nAnswer: {chr(66 + step['answer'])}.\nAction: {step['op']}"
    return reply + (f"\nValue: {step['value']}" if step["op"] != "CLICK" else "")


def make_payload(
    rng: random.Random, n_candidates: int = 5, min_steps: int = 3, max_steps: int = 8
) -> dict[str, Any]:
    template, goal, steps = rng.choice(TEMPLATES)(rng)
    if not min_steps <= len(steps) <= max_steps:
        raise Redraw
    return {
        "template": template,
        "goal": goal,
        "steps": [finalize_step(rng, s, n_candidates) for s in steps],
    }


def _demo_payloads() -> list[dict[str, Any]]:
    """Three fixed one-step tasks on sites no template uses: a TYPE, a SELECT and a CLICK."""
    rng = random.Random(2310)
    library = Site(rng, ("CityReads",), "Catalog Events Kids Research Visit")
    bus = Site(rng, ("CoachLine",), "Tickets Routes Deals Help Manage-booking")
    gym = Site(rng, ("PulseFit",), "Classes Trainers Membership Locations Blog")
    catalog = box(
        "form",
        textbox("q", "Search the catalog", role="searchbox"),
        select("scope", "Search in", ["Everything", "Books", "Movies", "Music"], "Everything"),
        button("go", "Search"),
        meta="search",
    )
    trip = box(
        "form",
        textbox("from", "Leaving from", "Madison, WI"),
        textbox("to", "Going to", "Milwaukee, WI"),
        select("pax", "Passengers", ["1 Adult", "2 Adults", "3 Adults", "4 Adults"], "1 Adult"),
        button("find", "Find trips"),
        meta="search",
    )
    slots = (("Spin", "6:00 PM"), ("Power Yoga", "6:00 PM"), ("Pilates", "7:30 PM"))
    classes = [
        box("div", txt("h3", name), txt("span", at), button(f"book{i}", "Book class"))
        for i, (name, at) in enumerate(slots)
    ]
    drafts = [
        (
            "Find the audiobook version of Dune at the library.",
            Step(library.page("Welcome", catalog), "q", "TYPE", "Dune", _DEMO_THOUGHTS[0]),
        ),
        (
            "Buy bus tickets from Madison, WI to Milwaukee, WI for 2 adults.",
            Step(bus.page("Book a bus trip", trip), "pax", "SELECT", "2 Adults", _DEMO_THOUGHTS[1]),
        ),
        (
            "Book the Power Yoga class at 6:00 PM today.",
            Step(gym.page("Today's classes", *classes), "book1", "CLICK", "", _DEMO_THOUGHTS[2]),
        ),
    ]
    return [
        {"template": "demo", "goal": goal, "steps": [finalize_step(rng, step, 5)]}
        for goal, step in drafts
    ]


_DEMO_THOUGHTS = (
    "I start by typing the title Dune into the catalog search box.",
    "The route is already filled in; the trip is for 2 adults, so I select 2 Adults.",
    "Power Yoga at 6:00 PM is the second class, so I click its Book class button.",
)


@lru_cache(maxsize=1)
def demonstration() -> tuple[Message, ...]:
    turns: list[Message] = []
    for payload in _demo_payloads():
        turns.append({"role": "user", "content": step_prompt(payload, 0)})
        turns.append(
            {"role": "assistant", "content": gold_reply(payload["steps"][0]), "loss": False}
        )
    return tuple(turns)


# --------------------------------------------------------------------------- scoring

_ANSWER = re.compile(r"Answer:\s*([A-Z])(?![A-Za-z])")
_ACTION = re.compile(rf"Action:\s*({'|'.join(OPS)})")
_VALUE = re.compile(r"Value:[ \t]*(.*)$", re.MULTILINE)


def parse_reply(text: str) -> tuple[str | None, str]:
    """AgentBench's ``postprocess_action_llm``: (letter or None, ``"OP value"``)."""
    answer, action, value = _ANSWER.search(text), _ACTION.search(text), _VALUE.search(text)
    op = action.group(1) if action else ""
    val = value.group(1).strip() if value else ""
    return (answer.group(1) if answer else None), f"{op} {val}".strip()


def op_f1(pred: str, label: str) -> float:
    """Mind2Web's operation F1: token-set F1 of ``"OP value"`` strings."""
    p, g = set(pred.split()), set(label.split())
    if not p and not g:
        return 1.0
    tp = len(p & g)
    if tp == 0:
        return 0.0
    precision, recall = tp / len(p), tp / len(g)
    return 2 * precision * recall / (precision + recall)


def score_step(reply: str, step: dict[str, Any]) -> dict[str, Any]:
    """Element accuracy, operation F1 and step success of one reply.

    "A" (none of the above), a letter past the choices or no letter at all predict no
    element, which AgentBench scores as element 0 and F1 0.
    """
    letter, action = parse_reply(reply)
    index = ord(letter) - 66 if letter else -1
    if not 0 <= index < len(step["choices"]):
        element, f1 = False, 0.0
    else:
        element = index == step["answer"]
        f1 = op_f1(action, f"{step['op']} {step['value']}".strip())
    return {
        "parsed": letter is not None,
        "choice": letter,
        "gold": chr(66 + step["answer"]),
        "element_correct": element,
        "op_f1": f1,
        "success": element and f1 >= 1.0,
    }


@lru_cache(maxsize=16)
def _all_tasks(config_json: str) -> dict[str, list[TaskSpec]]:
    config = Mind2WebConfig.model_validate_json(config_json)
    return generate_split_tasks(
        Mind2WebEnv.name,
        config,
        lambda rng: make_payload(rng, config.n_candidates, config.min_steps, config.max_steps),
        problem_text,
    )


# --------------------------------------------------------------------------- the env


class Mind2WebEnv(Env):
    name: ClassVar[str] = "mind2web"
    version: ClassVar[str] = "1"
    config_cls: ClassVar[type[FamilyConfig]] = Mind2WebConfig

    config: Mind2WebConfig

    def __init__(self, config: Mind2WebConfig | None = None) -> None:
        super().__init__(config)
        self._task: TaskSpec | None = None
        self._scores: list[dict[str, Any]] = []
        self._streak = 0
        self._done = True

    def tasks(self, split: str) -> list[TaskSpec]:
        generation = self.config.model_dump(
            include={"n_train", "n_test", "seed", "n_candidates", "min_steps", "max_steps"}
        )
        key = Mind2WebConfig(**generation).model_dump_json()
        return split_tasks(_all_tasks(key), split)

    def prompt(self, task: TaskSpec) -> list[Message]:
        messages: list[Message] = [
            {"role": "user", "content": INSTRUCTION},
            {"role": "assistant", "content": "Ok.", "loss": False},
        ]
        messages += [dict(m) for m in demonstration()[: 2 * self.config.n_shots]]  # type: ignore[misc]
        messages.append({"role": "user", "content": problem_text(task.payload)})
        return messages

    def reset(self, task: TaskSpec) -> list[Message]:
        self._task = task
        self._scores = []
        self._streak = 0
        self._done = False
        return self.prompt(task)

    @staticmethod
    def action_problem(reply: str) -> str | None:
        letter, action = parse_reply(reply)
        if letter is None:
            return "no `Answer:` letter"
        if letter != "A" and not action:
            return "an element is chosen but there is no `Action:`"
        return None

    def step(self, action: str) -> StepResult:
        if self._done or self._task is None:
            return no_episode_result()
        steps = self._task.payload["steps"]
        score = score_step(action, steps[len(self._scores)])
        self._scores.append(score)
        self._streak = 0 if score["parsed"] else self._streak + 1
        k = len(self._scores)
        if k == len(steps):
            return self._finish_episode(Status.COMPLETED, score)
        limit = self.config.max_invalid_streak
        if limit and self._streak >= limit:
            return self._finish_episode(Status.AGENT_INVALID_ACTION, score)
        if k >= self.config.max_rounds:
            return self._finish_episode(Status.TASK_LIMIT_REACHED, score)
        observation = step_prompt(self._task.payload, k, self.config.previous_k)
        return StepResult(observation=observation, done=False, info={"step": score})

    def _finish_episode(self, status: Status, last: dict[str, Any]) -> StepResult:
        """Reward = step success rate over all gold steps (unplayed ones count as failed)."""
        self._done = True
        n = len(self._task.payload["steps"])
        info = {
            "step": last,
            "steps": n,
            "scored": len(self._scores),
            "element_acc": sum(s["element_correct"] for s in self._scores) / n,
            "action_f1": sum(s["op_f1"] for s in self._scores) / n,
            "step_sr": sum(s["success"] for s in self._scores) / n,
        }
        return StepResult(
            observation=None, done=True, reward=info["step_sr"], status=status, info=info
        )

    def close(self) -> None:
        self._done = True

    def expert_actions(self, task: TaskSpec) -> list[str]:
        return [gold_reply(step) for step in task.payload["steps"]]
