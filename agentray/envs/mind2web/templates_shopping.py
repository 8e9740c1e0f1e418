"""Task templates: shopping, restaurants, movies, jobs."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from agentray.envs.mind2web import pages as ui
from agentray.envs.mind2web import vocabulary as vocab


def _shopping(rng: random.Random) -> tuple[str, str, list[ui.Step]]:
    site = ui.Site(
        rng, ("ShopMart", "CartCity", "BuyMore"), "Women Men Kids Sale New-arrivals Brands"
    )
    product = rng.choice(list(vocab.PRODUCTS))
    sizes = vocab.SIZES[vocab.PRODUCTS[product]]
    size, color, qty = rng.choice(sizes), rng.choice(vocab.COLORS), rng.choice((1, 1, 1, 2, 3))
    n = rng.randint(4, 6)
    brands, prices = rng.sample(vocab.BRANDS, n), rng.sample(range(19, 220), n)
    colors = [color, *(rng.choice(vocab.COLORS) for _ in range(n - 1))]
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
    swatches = [color, *rng.sample([c for c in vocab.COLORS if c != color], 2)]

    def home() -> ui.Node:
        search = ui.box(
            "form",
            ui.textbox("q", "Search products", state["query"], "searchbox"),
            ui.button("go", "", meta="submit search", label="Search"),
            meta="search",
        )
        return site.page(
            site.name, search, ui.box("div", ui.txt("h2", "Sale"), ui.link("promo", "Shop now"))
        )

    def results() -> ui.Node:
        shown = order if state["sort"] == "Featured" else sorted(order, key=lambda i: prices[i])
        cards = [
            ui.box(
                "div",
                ui.link(f"item{i}", names[i]),
                ui.txt("span", f"${prices[i]}"),
                meta="listitem",
            )
            for i in shown
        ]
        sorts = ["Featured", "Price: Low to High", "Price: High to Low", "Newest"]
        return site.page(
            f'Results for "{product}"',
            ui.select("sort", "Sort by", sorts, state["sort"]),
            ui.checkbox("instock", "In stock only"),
            ui.box("div", *cards, meta="list"),
        )

    def item() -> ui.Node:
        return site.page(
            names[gold],
            ui.txt("span", f"${prices[gold]}"),
            ui.box(
                "div", *(ui.button(f"swatch{i}", "", f"button {c}") for i, c in enumerate(swatches))
            ),
            ui.select("size", "Size", ["Select a size", *sizes], state["size"]),
            ui.select("qty", "Quantity", [str(q) for q in range(1, 6)], state["qty"]),
            ui.button("add", "Add to cart", meta="button add to cart"),
            ui.button("wish", "Add to wish list"),
            ui.link("reviews", "Read reviews"),
        )

    trail = ui.Trail()
    trail.type(home(), "q", product, f"I type {product} into the search ui.box.")
    state["query"] = product
    trail.click(home(), "go", "I click the search ui.button to see the results.")
    if by_price:
        low = "Price: Low to High"
        trail.select(
            results(), "sort", low, f"The task asks to sort by price, so I ui.select {low}."
        )
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


def _restaurant(rng: random.Random) -> tuple[str, str, list[ui.Step]]:
    site = ui.Site(
        rng, ("TableNow", "DineSpot", "EatEasy"), "Restaurants Offers Near-me Gift-cards Blog"
    )
    names: list[str] = []
    while len(names) < 4:
        name = f"The {rng.choice(vocab.ADJ)} {rng.choice(vocab.NOUN)} {rng.choice(vocab.EATERY)}"
        names += [name] if name not in names else []
    name, party, cuisine = names[0], rng.randint(1, 8), rng.choice(vocab.CUISINES)
    names = rng.sample(names, 4)
    days = [vocab.random_day(rng) + timedelta(days=i) for i in range(7)]
    day, time = rng.choice(days), rng.choice(vocab.TIMES[2:-2])
    parties = ["1 person", *(f"{n} people" for n in range(2, 9))]
    goal = f"Book a table for {party} at {name} on {vocab.long_date(day)} at {time}."
    want = {"party": parties[party - 1], "date": vocab.short_date(day), "time": time}
    state = {"query": "", "open": False, "party": "2 people", "date": vocab.short_date(days[0])}
    state["time"] = "7:00 PM"

    def home() -> ui.Node:
        fields = [ui.textbox("q", "Location, restaurant, or cuisine", state["query"], "searchbox")]
        fields.append(ui.button("go", "Let's go"))
        if state["open"]:
            fields.append(vocab.suggestions("hit", names))
        return site.page("Find your table for any occasion", ui.box("form", *fields, meta="search"))

    def venue(slots: tuple[str, ...] = ()) -> ui.Node:
        form = ui.box(
            "form",
            ui.select("party", "Party size", parties, state["party"]),
            ui.select("date", "Date", [vocab.short_date(d) for d in days], state["date"]),
            ui.select("time", "Time", list(vocab.TIMES), state["time"]),
            ui.button("find", "Find a table"),
        )
        times = (
            [ui.box("div", *(ui.button(f"slot{i}", s) for i, s in enumerate(slots)))]
            if slots
            else []
        )
        about = ui.box(
            "div",
            ui.txt("p", f"{cuisine} cuisine."),
            ui.link("menu", "Menu"),
            ui.link("pics", "Photos"),
        )
        return site.page(name, form, *times, about)

    trail = ui.Trail()
    trail.type(home(), "q", name, f"I search for the restaurant {name}.")
    state["query"], state["open"] = name, True
    trail.click(home(), f"hit{names.index(name)}", f"{name} appears in the results.")
    for key, label in (("party", "party size"), ("date", "date"), ("time", "time")):
        if state[key] != want[key]:
            trail.select(venue(), key, want[key], f"The {label} must be {want[key]}.")
            state[key] = want[key]
    trail.click(venue(), "find", "The reservation details are set, so I click Find a table.")
    slots = vocab.TIMES[vocab.TIMES.index(time) - 2 : vocab.TIMES.index(time) + 3]
    trail.click(venue(slots), f"slot{slots.index(time)}", f"The {time} slot is available.")
    return "restaurant", goal, trail.steps


def _movies(rng: random.Random) -> tuple[str, str, list[ui.Step]]:
    site = ui.Site(
        rng, ("TicketHub", "ShowTime", "CineGo"), "Movies Theaters Events Offers Rewards"
    )
    titles: list[str] = []
    while len(titles) < 4:
        title = f"The {rng.choice(vocab.MOVIE_ADJ)} {rng.choice(vocab.MOVIE_NOUN)}"
        titles += [title] if title not in titles else []
    movie, titles = titles[0], rng.sample(titles, 4)
    brands, places = rng.sample(vocab.CINEMA_BRANDS, 4), rng.sample(vocab.CINEMA_PLACES, 4)
    cinemas = [f"{b} {p}" for b, p in zip(brands, places, strict=True)]
    cinema, qty = rng.choice(cinemas), rng.randint(1, 6)
    days = [vocab.random_day(rng) + timedelta(days=i) for i in range(5)]
    day, times = rng.choice(days), sorted(rng.sample(vocab.TIMES, 5), key=vocab.TIMES.index)
    time = rng.choice(times)
    tickets = f"{qty} ticket{'s' if qty > 1 else ''}"
    goal = f"Buy {tickets} for {movie} at {cinema} on {vocab.long_date(day)} at {time}."
    state = {"query": "", "cinema": cinemas[0], "day": days[0], "qty": "1"}

    def search() -> ui.Node:
        fields = [
            ui.textbox("q", "Search movies", state["query"], "searchbox"),
            ui.button("go", "Search"),
        ]
        if state["query"]:
            fields.append(
                ui.box("ul", *(ui.box("li", ui.link(f"movie{i}", t)) for i, t in enumerate(titles)))
            )
        return site.page("Now playing", ui.box("form", *fields, meta="search"))

    def showtimes() -> ui.Node:
        tabs = [
            ui.button(
                f"tab{i}",
                vocab.short_date(d),
                meta="tab" + (" selected" if d == state["day"] else ""),
            )
            for i, d in enumerate(days)
        ]
        return site.page(
            movie,
            ui.select("cinema", "Theater", cinemas, state["cinema"]),
            ui.box("div", *tabs, meta="tablist"),
            ui.box("div", *(ui.button(f"show{i}", t) for i, t in enumerate(times)), meta="list"),
            ui.link("trailer", "Watch trailer"),
        )

    def checkout() -> ui.Node:
        return site.page(
            f"{movie} at {cinema}",
            ui.select("qty", "Tickets", [str(q) for q in range(1, 9)], state["qty"]),
            ui.button("cont", "Continue"),
            ui.link("back", "Change showtime"),
        )

    trail = ui.Trail()
    trail.type(search(), "q", movie, f"I search for the movie {movie}.")
    state["query"] = movie
    trail.click(search(), f"movie{titles.index(movie)}", f"I click {movie} in the results.")
    if cinema != state["cinema"]:
        trail.select(showtimes(), "cinema", cinema, f"The tickets are for {cinema}.")
        state["cinema"] = cinema
    if day != state["day"]:
        trail.click(showtimes(), f"tab{days.index(day)}", f"The show is on {vocab.long_date(day)}.")
        state["day"] = day
    trail.click(showtimes(), f"show{times.index(time)}", f"I click the {time} showtime.")
    if qty > 1:
        trail.select(checkout(), "qty", str(qty), f"I need {tickets}.")
        state["qty"] = str(qty)
    trail.click(checkout(), "cont", "The tickets are chosen, so I click Continue.")
    return "movies", goal, trail.steps


def _jobs(rng: random.Random) -> tuple[str, str, list[ui.Step]]:
    site = ui.Site(
        rng, ("JobBoard", "CareerLink", "HireHub"), "Jobs Companies Salaries Resume Employers"
    )
    title = rng.choice(vocab.JOBS)
    city = rng.choice(vocab.CITIES)[0] if rng.random() < 0.6 else None
    kind = rng.choice((None, *vocab.JOB_TYPES))
    companies = rng.sample(vocab.COMPANIES, rng.randint(4, 5))
    company = rng.choice(companies)
    where = f" in {city}" if city else ""
    kind_text = f"{kind.lower()} " if kind else ""
    goal = f"Find {kind_text}{title} jobs{where} and open the posting from {company}."
    state: dict[str, Any] = {"what": "", "where": "", "kind": None}

    def home() -> ui.Node:
        form = ui.box(
            "form",
            ui.textbox("what", "Job title, keywords, or company", state["what"]),
            ui.textbox("where", "City or state", state["where"]),
            ui.button("go", "Find jobs"),
            meta="search",
        )
        return site.page("Find your next job", form, ui.link("upload", "Upload your resume"))

    def results() -> ui.Node:
        boxes = [
            ui.checkbox(f"type{i}", t, state["kind"] == t) for i, t in enumerate(vocab.JOB_TYPES)
        ]
        cards = [
            ui.box("div", ui.link(f"job{i}", f"{title} - {c}"), ui.txt("span", city or "Remote"))
            for i, c in enumerate(companies)
        ]
        return site.page(
            f"{title} jobs{where}", ui.box("div", *boxes), ui.box("div", *cards, meta="list")
        )

    trail = ui.Trail()
    trail.type(home(), "what", title, f"I type the job title {title}.")
    state["what"] = title
    if city:
        trail.type(home(), "where", city, f"The jobs must be in {city}; I type it as the location.")
        state["where"] = city
    trail.click(home(), "go", "I click Find jobs to search.")
    if kind:
        trail.click(results(), f"type{vocab.JOB_TYPES.index(kind)}", f"I tick the {kind} filter.")
        state["kind"] = kind
    trail.click(results(), f"job{companies.index(company)}", f"I open the posting from {company}.")
    return "jobs", goal, trail.steps
