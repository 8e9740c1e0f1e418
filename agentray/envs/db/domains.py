"""Table domains (employees, products, ...): columns and value generators."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Domain:
    entity: str  # plural noun used in questions
    singular: str
    tables: tuple[str, ...]
    key: str  # unique text column
    make_key: Callable[[random.Random], str]
    cats: dict[str, tuple[str, ...]]
    nums: dict[str, tuple[str, float, float]]  # column -> (INTEGER|REAL, low, high)
    columns: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", (self.key, *self.cats, *self.nums))

    def sql_type(self, column: str) -> str:
        return self.nums[column][0] if column in self.nums else "TEXT"

    def random_value(self, rng: random.Random, column: str) -> Any:
        if column == self.key:
            return self.make_key(rng)
        if column in self.cats:
            return rng.choice(self.cats[column])
        kind, low, high = self.nums[column]
        if kind == "INTEGER":
            return rng.randint(int(low), int(high))
        return round(rng.uniform(low, high), 2 if high > 10 else 1)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


_FIRST = _words(
    "Alice Bruno Chloe Dmitri Elena Farid Grace Hiro Ines Jonas Keiko Liam Maya Nikolai "
    "Olga Pedro Quinn Rosa Sven Tara Umar Vera Wendell Ximena Yusuf Zoe Amara Bennett "
    "Carmen Dario Esme Felix Greta Hamid Isla Joaquin"
)


_LAST = _words(
    "Moreno Schmidt Okafor Tanaka Novak Larsen Patel Rossi Kowalski Dubois Haddad Lindqvist "
    "Fischer Costa Nguyen Brennan Ivanova Sato Mendes Kaur Becker Silva Horvat Jensen"
)


_ADJ = _words(
    "Steel Velvet Rapid Compact Golden Quiet Arctic Smart Rustic Solar Crimson Nimble "
    "Classic Urban Lunar Breeze Titan Pixel Cedar Coral"
)


_NOUN = _words(
    "Kettle Lamp Backpack Blender Drone Speaker Notebook Jacket Tent Helmet Mixer Monitor "
    "Sneaker Router Camera Scooter Puzzle Skillet Printer Umbrella"
)


_SYL = _words(
    "bar cel dor fen gal har ist kor lan mir nor ost pra quin ros sal tor ulm ven wes zar"
)


_WORDS = _words(
    "silent river winter garden hidden empire crimson tide broken compass last harbor "
    "golden orchard distant signal paper moon iron forest glass city northern light"
)


def _person(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"


def _product(rng: random.Random) -> str:
    return f"{rng.choice(_ADJ)} {rng.choice(_NOUN)} {rng.randint(100, 999)}"


def _place(rng: random.Random) -> str:
    return "".join(rng.choice(_SYL) for _ in range(rng.randint(2, 3))).capitalize()


def _title(rng: random.Random) -> str:
    a, b = rng.sample(_WORDS, 2)
    return f"The {a.capitalize()} {b.capitalize()}"


def _code(prefix: str) -> Callable[[random.Random], str]:
    return lambda rng: f"{prefix}{rng.randint(1000, 9999)}"


DOMAINS: tuple[Domain, ...] = (
    Domain(
        "employees",
        "employee",
        ("employees", "staff", "employee_records"),
        "name",
        _person,
        {
            "department": ("Sales", "Engineering", "Marketing", "Finance", "Support", "HR"),
            "city": ("Boston", "Denver", "Austin", "Seattle", "Chicago"),
        },
        {
            "salary": ("INTEGER", 30000, 150000),
            "age": ("INTEGER", 21, 65),
            "years_of_service": ("INTEGER", 0, 30),
        },
    ),
    Domain(
        "products",
        "product",
        ("products", "inventory", "catalog"),
        "product_name",
        _product,
        {
            "category": ("Electronics", "Kitchen", "Garden", "Toys", "Books", "Sports"),
            "supplier": ("Acme", "Globex", "Initech", "Umbrella", "Stark"),
        },
        {
            "price": ("REAL", 2, 500),
            "stock": ("INTEGER", 0, 400),
            "rating": ("REAL", 1, 5),
        },
    ),
    Domain(
        "cities",
        "city",
        ("cities", "city_stats", "municipalities"),
        "city",
        _place,
        {
            "country": ("Freedonia", "Genovia", "Latveria", "Wakanda", "Zubrowka"),
            "region": ("North", "South", "East", "West", "Central"),
        },
        {
            "population": ("INTEGER", 10000, 3000000),
            "area_km2": ("REAL", 20, 2000),
            "founded": ("INTEGER", 1100, 1950),
        },
    ),
    Domain(
        "matches",
        "match",
        ("matches", "fixtures", "game_results"),
        "match_code",
        _code("M-"),
        {
            "home_team": ("Lions", "Falcons", "Rovers", "United", "Rangers", "Comets"),
            "stadium": ("Riverside", "Hillcrest", "Harbor Park", "Old Mill"),
        },
        {
            "home_goals": ("INTEGER", 0, 6),
            "away_goals": ("INTEGER", 0, 6),
            "attendance": ("INTEGER", 5000, 80000),
            "season": ("INTEGER", 2015, 2023),
        },
    ),
    Domain(
        "books",
        "book",
        ("books", "library_books", "book_catalog"),
        "title",
        _title,
        {
            "genre": ("Mystery", "Fantasy", "Biography", "Science", "Romance", "History"),
            "publisher": ("Penfold", "Larkspur", "Bluegate", "Northwind"),
        },
        {
            "year": ("INTEGER", 1950, 2023),
            "pages": ("INTEGER", 90, 900),
            "rating": ("REAL", 1, 5),
        },
    ),
    Domain(
        "students",
        "student",
        ("students", "enrollment", "student_records"),
        "student_name",
        _person,
        {
            "major": ("Physics", "History", "Biology", "Economics", "Art", "Computer Science"),
            "year_level": ("Freshman", "Sophomore", "Junior", "Senior"),
        },
        {
            "gpa": ("REAL", 2, 4),
            "credits": ("INTEGER", 0, 140),
            "age": ("INTEGER", 17, 30),
        },
    ),
    Domain(
        "flights",
        "flight",
        ("flights", "departures", "flight_log"),
        "flight_number",
        _code("AR"),
        {
            "origin": ("JFK", "LHR", "CDG", "NRT", "SYD", "GRU"),
            "airline": ("Skyway", "Aerolux", "BlueJet", "Polaris"),
        },
        {
            "duration_min": ("INTEGER", 45, 900),
            "passengers": ("INTEGER", 20, 400),
            "fare": ("REAL", 40, 1500),
        },
    ),
)
