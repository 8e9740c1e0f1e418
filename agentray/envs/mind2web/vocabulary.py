"""Vocabulary of the generated sites (cities, products, dates, ...)."""

from __future__ import annotations

import random
from datetime import date, timedelta

from agentray.envs.mind2web.pages import Node, box, button, txt


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


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


AIRLINES = _words("Delta United Alaska JetBlue Southwest Frontier Spirit Hawaiian")


ADJ = _words("Golden Blue Rustic Little Silver Green Old Royal Urban Coastal Velvet Amber")


NOUN = _words("Fork Olive Table Lantern Garden Spoon Harbor Oven Vine Pepper Maple Anchor")


EATERY = _words("Bistro Kitchen Grill Trattoria Cafe Tavern Brasserie Diner")


LODGING = ("Hotel", "Inn", "Suites", "Resort", "Lodge")


PRODUCTS = {
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


BRANDS = _words("Northpeak Velo Stride Kinetic Arbor Lumen Summit Tidal")


COLORS = _words("black white navy red green grey blue orange")


SIZES = {"shoe": ("7", "8", "9", "10", "11", "12"), "cloth": ("XS", "S", "M", "L", "XL")}


CARS = {
    "Economy": ("Kia Rio", "Nissan Versa"),
    "Compact": ("Toyota Corolla", "Ford Focus"),
    "Midsize": ("Hyundai Sonata", "Mazda 6"),
    "SUV": ("Ford Explorer", "Toyota RAV4"),
    "Minivan": ("Chrysler Pacifica", "Honda Odyssey"),
    "Luxury": ("BMW 5 Series", "Audi A6"),
    "Convertible": ("Ford Mustang Convertible", "Mini Cooper Convertible"),
}


MOVIE_ADJ = _words("Silent Hidden Crimson Broken Distant Northern Paper Iron Glass Midnight Last")


MOVIE_NOUN = _words("River Garden Empire Tide Compass Harbor Signal Moon Forest City Light Echo")


CINEMA_BRANDS = ("Regal", "AMC", "Cinemark", "Alamo", "Landmark")


CINEMA_PLACES = _words("Riverside Downtown Union Eastgate Westfield Lakeside Harbor Plaza")


JOBS = (
    "Data Analyst",
    "Software Engineer",
    "Product Manager",
    "Graphic Designer",
    "Nurse Practitioner",
    "Sales Associate",
    "Accountant",
    "Marketing Coordinator",
)


COMPANIES = _words("Acme Globex Initech Umbrella Stark Hooli Vandelay Wonka Soylent Cyberdyne")


JOB_TYPES = ("Full-time", "Part-time", "Contract", "Internship")


CUISINES = ("Italian", "French", "Thai", "Mexican", "Japanese", "Greek")


TIMES = tuple(f"{h}:{m:02d} PM" for h in range(5, 10) for m in (0, 15, 30, 45))


def random_day(rng: random.Random) -> date:
    return date(2024, 1, 1) + timedelta(days=rng.randint(30, 330))


# Own names rather than strftime, whose %A / %B follow the process locale.
_WEEKDAYS = _words("Monday Tuesday Wednesday Thursday Friday Saturday Sunday")


_MONTHS = _words(
    "January February March April May June July August September October November December"
)


def month_day(d: date) -> str:
    return f"{_MONTHS[d.month - 1]} {d.day}"  # March 15


def long_date(d: date) -> str:
    return f"{_WEEKDAYS[d.weekday()]}, {month_day(d)}"  # Friday, March 15


def short_date(d: date) -> str:
    return f"{_WEEKDAYS[d.weekday()][:3]}, {_MONTHS[d.month - 1][:3]} {d.day}"  # Fri, Mar 15


def _day_meta(d: date) -> str:
    return f"{_WEEKDAYS[d.weekday()]} {month_day(d)}, {d.year}".lower()  # friday march 15, 2024


def calendar(rng: random.Random, days: list[date], marks: dict[date, str]) -> Node:
    """A two-week date grid around ``days`` (the days to pick must lie within it)."""
    start = min(days) - timedelta(days=rng.randint(0, max(0, 13 - (max(days) - min(days)).days)))
    cells = []
    for i in range(14):
        d = start + timedelta(days=i)
        meta = _day_meta(d) + (f" {marks[d]}" if d in marks else "")
        label = f"{short_date(d).replace(',', '')} {d.year}"
        cells.append(button(f"day{i}", str(d.day), meta=meta, label=label))
    return box(
        "div", txt("span", f"{_MONTHS[start.month - 1]} {start.year}"), *cells, meta="grid calendar"
    )


def day_key(calendar: Node, d: date) -> str:
    needle = _day_meta(d)
    return next(c.key for c in calendar.walk() if c.key and c.meta.startswith(needle))


def suggestions(prefix: str, options: list[str]) -> Node:
    """An autocomplete list; Mind2Web records clicks on its entries as ``[option]``."""
    items = [
        box("li", Node("button", "option", o, key=f"{prefix}{i}", role="option", label=o))
        for i, o in enumerate(options)
    ]
    return box("ul", *items, meta="listbox")
