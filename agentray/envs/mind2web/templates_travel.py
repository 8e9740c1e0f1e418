"""Task templates: flights, car rental, hotels."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from agentray.envs.mind2web.pages import (
    Node,
    Site,
    Step,
    Trail,
    box,
    button,
    checkbox,
    select,
    textbox,
    txt,
)
from agentray.envs.mind2web.vocabulary import (
    ADJ,
    AIRLINES,
    CARS,
    CITIES,
    LODGING,
    NOUN,
    _calendar,
    _day,
    _long,
    _md,
    _suggestions,
    day_key,
)


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
    trail.click(page, day_key(page, day), f"The flight is on {_long(day)}; I click that day.")
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
    airlines, prices = rng.sample(AIRLINES, n), rng.sample(range(89, 700), n)
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


def _car_rental(rng: random.Random) -> tuple[str, str, list[Step]]:
    site = Site(rng, ("RentRide", "DriveAway", "AutoHire"), "Reservations Vehicles Locations Deals")
    city, st, code = rng.choice(CITIES)
    other = rng.choice([c for c in CITIES if c[0] != city])
    airport, car = rng.random() < 0.5, rng.choice(list(CARS))
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
        trail.click(page, day_key(page, d), f"The {what} date is {_long(d)}; I click it.")
        state["marks"] = {**state["marks"], d: f"selected {what} date"}
    if age:
        trail.click(form(), "over25", f"The driver is {age}, so I uncheck the 25 or older box.")
        state["over25"] = False
        trail.type(form(), "age", str(age), f"I type the driver's age {age}.")
        state["age"] = str(age)
    trail.click(form(), "search", "The form is complete, so I click Search cars.")
    classes = rng.sample([car, *rng.sample([c for c in CARS if c != car], 4)], 5)
    rows = [
        box(
            "div",
            txt("h3", c),
            txt("span", f"{rng.choice(CARS[c])} or similar"),
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
        trail.click(page, day_key(page, d), f"The {what} date is {_long(d)}; I click it.")
        state["marks"] = {**state["marks"], d: f"selected {what}"}
    if counts[adults - 1] != state["guests"]:
        guests = counts[adults - 1]
        trail.select(form(), "guests", guests, f"The stay is for {guests}.")
        state["guests"] = guests
    trail.click(form(), "search", "The search is set, so I click Search.")
    n = rng.randint(4, 6)
    adjs, nouns = rng.sample(ADJ, n), rng.sample(NOUN, n)
    names = [f"{adjs[i]} {nouns[i]} {rng.choice(LODGING)}" for i in range(n)]
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
