"""Task templates: flights, car rental, hotels."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from agentray.envs.mind2web import pages as ui
from agentray.envs.mind2web import vocabulary as vocab


def _flights(rng: random.Random) -> tuple[str, str, list[ui.Step]]:
    site = ui.Site(rng, ("SkyWays", "AeroJet", "FlyNow"), "Book Trips Deals Travel-info Miles")
    (a, a_st, a_code), (b, b_st, b_code) = rng.sample(vocab.CITIES, 2)
    day, adults = vocab.random_day(rng), rng.choice((1, 1, 2, 3, 4))
    criterion = rng.choice(("cheapest", "earliest", "cheapest nonstop"))
    counts = ["1 Adult", *(f"{n} Adults" for n in range(2, 7))]
    verb = rng.choice(("Find", "Book", "Choose"))
    goal = (
        f"{verb} the {criterion} one-way flight from {a} to {b} on {vocab.month_day(day)} "
        f"for {counts[adults - 1].lower()}."
    )
    others = [c for c in vocab.CITIES if c[0] not in (a, b)]
    suggest = {
        name: rng.sample([f"{c}, {s}, US ({k})" for c, s, k in [gold, *rng.sample(others, 2)]], 3)
        for name, gold in (("from", (a, a_st, a_code)), ("to", (b, b_st, b_code)))
    }
    state: dict[str, Any] = {"trip": rng.choice(("Round trip", "One-way")), "from": "", "to": ""}
    state.update(open=None, day=None, adults="1 Adult")
    autocomplete, cal_seed = rng.random() < 0.5, rng.random()

    def form() -> ui.Node:
        tabs = [
            ui.button(f"trip{i}", t, meta="tab" + (" selected" if state["trip"] == t else ""))
            for i, t in enumerate(("Round trip", "One-way"))
        ]
        fields = [ui.box("div", *tabs, meta="tablist")]
        for name in ("from", "to"):
            fields.append(
                ui.textbox(name, f"{name.title()}: city or airport", state[name], "combobox")
            )
            if state["open"] == name:
                fields.append(vocab.suggestions(f"{name}_opt", suggest[name]))
        marks = {state["day"]: "selected"} if state["day"] else {}
        fields.append(vocab.calendar(random.Random(cal_seed), [day], marks))
        fields.append(ui.select("adults", "Passengers", counts, state["adults"]))
        fields.append(ui.button("search", "Search flights", meta="submit"))
        return site.page("Where to next?", ui.box("form", *fields, meta="search"))

    trail = ui.Trail()
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
    trail.click(
        page,
        vocab.day_key(page, day),
        f"The flight is on {vocab.long_date(day)}; I click that day.",
    )
    state["day"] = day
    if adults > 1:
        who = counts[adults - 1]
        trail.select(form(), "adults", who, f"There are {adults} travelers, so I ui.select {who}.")
        state["adults"] = who
    trail.click(form(), "search", "The search form is complete, so I click Search flights.")
    trail.steps.append(_flight_results(rng, site, a_code, b_code, criterion))
    return "flights", goal, trail.steps


def _flight_results(rng: random.Random, site: ui.Site, a: str, b: str, criterion: str) -> ui.Step:
    n = rng.randint(4, 6)
    airlines, prices = rng.sample(vocab.AIRLINES, n), rng.sample(range(89, 700), n)
    departs = rng.sample(range(6 * 60, 22 * 60, 5), n)
    stops = [rng.choice(("Nonstop", "1 stop", "1 stop", "2 stops")) for _ in range(n)]
    if "Nonstop" not in stops:
        stops[rng.randrange(n)] = "Nonstop"
    pool = [i for i in range(n) if "nonstop" not in criterion or stops[i] == "Nonstop"]
    best = min(pool, key=lambda i: departs[i] if criterion == "earliest" else prices[i])
    clock = [f"{m // 60 % 12 or 12}:{m % 60:02d} {'AM' if m < 720 else 'PM'}" for m in departs]
    rows = [
        ui.box(
            "div",
            ui.txt("span", airlines[i]),
            ui.txt("span", f"{clock[i]} {a} - {b}"),
            ui.txt("span", stops[i]),
            ui.txt("span", f"${prices[i]}"),
            ui.button(f"pick{i}", "Select", meta="button ui.select flight"),
            meta="listitem",
        )
        for i in range(n)
    ]
    filters = ui.box(
        "div",
        ui.select("sort", "Sort by", ["Recommended", "Price", "Departure time"], "Recommended"),
        ui.checkbox("nonstop", "Nonstop only"),
        ui.button("modify", "Modify search"),
    )
    page = site.page(f"Flights from {a} to {b}", filters, ui.box("div", *rows, meta="list"))
    thought = (
        f"The {criterion} flight is {airlines[best]} at {clock[best]} "
        f"({stops[best].lower()}, ${prices[best]}), so I click its Select ui.button."
    )
    return ui.Step(page, f"pick{best}", "CLICK", "", thought)


def _car_rental(rng: random.Random) -> tuple[str, str, list[ui.Step]]:
    site = ui.Site(
        rng, ("RentRide", "DriveAway", "AutoHire"), "Reservations Vehicles Locations Deals"
    )
    city, st, code = rng.choice(vocab.CITIES)
    other = rng.choice([c for c in vocab.CITIES if c[0] != city])
    airport, car = rng.random() < 0.5, rng.choice(list(vocab.CARS))
    pick = vocab.random_day(rng)
    back = pick + timedelta(days=rng.randint(2, 7))
    age = rng.choice((None, None, 21, 22, 23, 24))
    where = f"at the {city} airport" if airport else f"in downtown {city}"
    goal = (
        f"Rent a {car.lower()} car {where} from {vocab.month_day(pick)} to {vocab.month_day(back)}"
        + (f" for a {age}-year-old driver." if age else ".")
    )
    target = f"{city} Airport ({code})" if airport else f"{city} Downtown, {st}"
    places = [target, f"{city} Downtown, {st}" if airport else f"{city} Airport ({code})"]
    places = rng.sample([*places, f"{other[0]} Airport ({other[2]})"], 3)
    state: dict[str, Any] = {"where": "", "open": False, "marks": {}, "over25": True, "age": ""}
    cal_seed = rng.random()

    def form() -> ui.Node:
        fields = [ui.textbox("where", "Pick-up location", state["where"], "combobox")]
        if state["open"]:
            fields.append(vocab.suggestions("loc", places))
        fields.append(vocab.calendar(random.Random(cal_seed), [pick, back], state["marks"]))
        fields.append(ui.checkbox("over25", "Driver aged 25 or older", state["over25"]))
        if not state["over25"]:
            fields.append(ui.textbox("age", "Driver's age", state["age"]))
        fields.append(ui.button("search", "Search cars", meta="submit"))
        return site.page("Reserve a vehicle", ui.box("form", *fields, meta="search"))

    trail = ui.Trail()
    trail.type(form(), "where", city, f"I type {city} as the pick-up location.")
    state.update(where=city, open=True)
    trail.click(form(), f"loc{places.index(target)}", f"The pick-up is {where}: {target}.")
    state.update(where=target, open=False)
    for d, what in ((pick, "pick-up"), (back, "return")):
        page = form()
        trail.click(
            page, vocab.day_key(page, d), f"The {what} date is {vocab.long_date(d)}; I click it."
        )
        state["marks"] = {**state["marks"], d: f"selected {what} date"}
    if age:
        trail.click(form(), "over25", f"The driver is {age}, so I uncheck the 25 or older ui.box.")
        state["over25"] = False
        trail.type(form(), "age", str(age), f"I type the driver's age {age}.")
        state["age"] = str(age)
    trail.click(form(), "search", "The form is complete, so I click Search cars.")
    classes = rng.sample([car, *rng.sample([c for c in vocab.CARS if c != car], 4)], 5)
    rows = [
        ui.box(
            "div",
            ui.txt("h3", c),
            ui.txt("span", f"{rng.choice(vocab.CARS[c])} or similar"),
            ui.txt("span", f"${rng.randint(25, 190)}/day"),
            ui.button(f"car{i}", "Select", meta="button ui.select vehicle"),
            meta="listitem",
        )
        for i, c in enumerate(classes)
    ]
    sorter = ui.select("sort", "Sort by", ["Recommended", "Price: Low to High"], "Recommended")
    page = site.page(f"Vehicles at {target}", sorter, ui.box("div", *rows, meta="list"))
    trail.click(
        page, f"car{classes.index(car)}", f"I need a {car.lower()} car; I ui.select that offer."
    )
    return "car_rental", goal, trail.steps


def _hotel(rng: random.Random) -> tuple[str, str, list[ui.Step]]:
    site = ui.Site(
        rng, ("StayFinder", "RoomRadar", "InnSeeker"), "Stays Flights Packages Deals Rewards"
    )
    city, st, _ = rng.choice(vocab.CITIES)
    checkin = vocab.random_day(rng)
    checkout = checkin + timedelta(days=rng.randint(1, 5))
    adults, criterion = rng.randint(1, 4), rng.choice(("cheapest", "highest-rated"))
    breakfast = rng.random() < 0.5
    counts = ["1 adult", *(f"{n} adults" for n in range(2, 7))]
    perk = " with free breakfast" if breakfast else ""
    goal = (
        f"Find the {criterion} hotel{perk} in {city} from {vocab.month_day(checkin)} "
        f"to {vocab.month_day(checkout)} for {counts[adults - 1]}."
    )
    others = rng.sample([c for c in vocab.CITIES if c[0] != city], 2)
    places = rng.sample([f"{c}, {s}, United States" for c, s, _ in [(city, st, ""), *others]], 3)
    target = f"{city}, {st}, United States"
    state: dict[str, Any] = {"where": "", "open": False, "marks": {}, "guests": "2 adults"}
    state["breakfast"], cal_seed = False, rng.random()

    def form() -> ui.Node:
        fields = [ui.textbox("where", "Where are you going?", state["where"], "combobox")]
        if state["open"]:
            fields.append(vocab.suggestions("place", places))
        fields.append(vocab.calendar(random.Random(cal_seed), [checkin, checkout], state["marks"]))
        fields.append(ui.select("guests", "Guests", counts, state["guests"]))
        fields.append(ui.button("search", "Search", meta="submit"))
        return site.page("Find your next stay", ui.box("form", *fields, meta="search"))

    trail = ui.Trail()
    trail.type(form(), "where", city, f"I type the destination {city}.")
    state.update(where=city, open=True)
    trail.click(form(), f"place{places.index(target)}", f"I pick {target} from the suggestions.")
    state.update(where=target, open=False)
    for d, what in ((checkin, "check-in"), (checkout, "check-out")):
        page = form()
        trail.click(
            page, vocab.day_key(page, d), f"The {what} date is {vocab.long_date(d)}; I click it."
        )
        state["marks"] = {**state["marks"], d: f"selected {what}"}
    if counts[adults - 1] != state["guests"]:
        guests = counts[adults - 1]
        trail.select(form(), "guests", guests, f"The stay is for {guests}.")
        state["guests"] = guests
    trail.click(form(), "search", "The search is set, so I click Search.")
    n = rng.randint(4, 6)
    adjs, nouns = rng.sample(vocab.ADJ, n), rng.sample(vocab.NOUN, n)
    names = [f"{adjs[i]} {nouns[i]} {rng.choice(vocab.LODGING)}" for i in range(n)]
    prices, ratings = rng.sample(range(79, 480), n), rng.sample(range(60, 99), n)
    has_bf = [rng.random() < 0.5 for _ in range(n)]
    has_bf[rng.randrange(n)] = True

    def results() -> ui.Node:
        cards = [
            ui.box(
                "div",
                ui.txt("h3", names[i]),
                ui.txt("span", f"{ratings[i] / 10:.1f} rating"),
                ui.txt("span", "Free breakfast" if has_bf[i] else "Room only"),
                ui.txt("span", f"${prices[i]} per night"),
                ui.button(f"deal{i}", "See availability"),
                meta="listitem",
            )
            for i in range(n)
            if has_bf[i] or not state["breakfast"]
        ]
        filters = ui.box(
            "div",
            ui.checkbox("bf", "Free breakfast", state["breakfast"]),
            ui.checkbox("pool", "Pool"),
            ui.checkbox("cancel", "Free cancellation"),
        )
        return site.page(
            f"{city}: {n} properties found", filters, ui.box("div", *cards, meta="list")
        )

    if breakfast:
        trail.click(results(), "bf", "The hotel must have free breakfast; I tick that filter.")
        state["breakfast"] = True
    pool = [i for i in range(n) if has_bf[i] or not breakfast]
    best = min(pool, key=lambda i: prices[i] if criterion == "cheapest" else -ratings[i])
    fact = f"${prices[best]} a night" if criterion == "cheapest" else f"{ratings[best] / 10:.1f}"
    thought = f"{names[best]} is the {criterion} option{perk} ({fact}), so I check availability."
    trail.click(results(), f"deal{best}", thought)
    return "hotel", goal, trail.steps
