"""The demonstrations: three short tasks on sites of their own, with thoughts."""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

from agentray.envs.mind2web.pages import (
    Site,
    Step,
    box,
    button,
    finalize_step,
    select,
    textbox,
    txt,
)
from agentray.envs.mind2web.prompt import gold_reply, step_prompt
from agentray.types import Message


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
