"""Building the seeded Freebase-style graph."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path

from agentray.envs.kg.config import KGConfig
from agentray.envs.kg.graph import KnowledgeGraph
from agentray.envs.kg.schema import (
    ADJ,
    ATTRIBUTES,
    CITY,
    COMPANY,
    COMPANY_ENDS,
    COUNTRY,
    COUNTRY_ENDS,
    FILM,
    FIRST,
    GENRE,
    GENRES,
    INDUSTRIES,
    INDUSTRY,
    LAST,
    MASCOTS,
    NOUN,
    PAIRS,
    PERSON,
    PROFESSION,
    PROFESSIONS,
    RELATIONS,
    SPORT,
    SPORTS,
    SYL,
    TEAM,
    UNIVERSITY,
)


class _Builder:
    """Draws the generated graph: names first, then facts, then attributes."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.graph = KnowledgeGraph()
        self.used: set[str] = set()
        for rel in RELATIONS.values():
            self.graph.ranges[rel.name] = rel.range

    def entity(self, kind: str, make: Callable[[], str]) -> str:
        for _ in range(1000):
            name = make()
            if name not in self.used:
                break
        else:
            raise RuntimeError(f"ran out of {kind} names")
        self.used.add(name)
        self.graph.types[name].add(kind)
        return name

    def fixed(self, kind: str, names: Iterable[str]) -> list[str]:
        return [self.entity(kind, lambda n=n: n) for n in names]

    def link(self, forward: str, head: str, tail: str) -> None:
        fwd, rev = PAIRS[forward]
        self.graph.add_edge(head, fwd.name, tail)
        self.graph.add_edge(tail, rev.name, head)
        self.graph.types[head].add(fwd.domain)
        self.graph.types[tail].add(fwd.range)

    def place(self) -> str:
        return "".join(self.rng.choice(SYL) for _ in range(self.rng.randint(2, 3))).capitalize()

    def person(self) -> str:
        first, last = self.rng.choice(FIRST), self.rng.choice(LAST)
        if self.rng.random() < 0.3:
            return f"{first} {chr(65 + self.rng.randrange(26))}. {last}"
        return f"{first} {last}"

    def attributes(self) -> None:
        for entity in sorted(self.graph.types):
            for kind in sorted(self.graph.types[entity]):
                for attribute, low, high, decimals in ATTRIBUTES.get(kind, ()):
                    if self.rng.random() < 0.9:
                        value = round(self.rng.uniform(low, high), decimals)
                        self.graph.add_attr(entity, attribute, value)


def generate_graph(seed: int, scale: int = 1) -> KnowledgeGraph:
    """The seeded graph: ~470 entities, ~2200 facts (each stored both ways) per ``scale``."""
    b = _Builder(random.Random(f"kg-graph:{seed}:{scale}"))
    rng = b.rng
    countries = [
        b.entity(COUNTRY, lambda: b.place() + rng.choice(COUNTRY_ENDS)) for _ in range(8 * scale)
    ]
    cities = [b.entity(CITY, b.place) for _ in range(48 * scale)]
    for i, city in enumerate(cities):
        b.link("location.location.containedby", city, countries[i % len(countries)])
    professions = b.fixed(PROFESSION, PROFESSIONS)
    industries = b.fixed(INDUSTRY, INDUSTRIES)
    genres = b.fixed(GENRE, GENRES)
    sports = b.fixed(SPORT, SPORTS)
    people = [b.entity(PERSON, b.person) for _ in range(240 * scale)]
    _people_facts(b, people, cities, countries, professions)
    _universities(b, people, cities, 16 * scale)
    _companies(b, people, cities, industries, 36 * scale)
    _films(b, people, countries, genres, 72 * scale)
    _teams(b, people, cities, sports, 20 * scale)
    b.attributes()
    return b.graph


def _people_facts(b: _Builder, people, cities, countries, professions) -> None:
    rng = b.rng
    for person in people:
        city = rng.choice(cities)
        b.link("people.person.place_of_birth", person, city)
        [home] = b.graph.edges[city]["location.location.containedby"]
        b.link(
            "people.person.nationality",
            person,
            home if rng.random() < 0.85 else rng.choice(countries),
        )
        if rng.random() < 0.05:
            b.link("people.person.nationality", person, rng.choice(countries))
        for profession in rng.sample(professions[4:], rng.randint(1, 2)):
            b.link("people.person.profession", person, profession)


def _universities(b: _Builder, people, cities, n: int) -> None:
    rng = b.rng
    for _ in range(n):
        city = rng.choice(cities)
        name = b.entity(
            UNIVERSITY,
            lambda city=city: rng.choice(
                (
                    f"University of {city}",
                    f"{city} State University",
                    f"{rng.choice(LAST)} Institute of Technology",
                )
            ),
        )
        b.link("education.university.city", name, city)
    universities = [e for e in b.graph.types if UNIVERSITY in b.graph.types[e]]
    for person in people:
        for university in rng.sample(universities, rng.choice((0, 1, 1, 2))):
            b.link("people.person.education", person, university)


def _companies(b: _Builder, people, cities, industries, n: int) -> None:
    rng = b.rng
    companies = [
        b.entity(
            COMPANY, lambda: f"{rng.choice(ADJ)} {rng.choice(NOUN)} {rng.choice(COMPANY_ENDS)}"
        )
        for _ in range(n)
    ]
    for company in companies:
        b.link("organization.organization.headquarters", company, rng.choice(cities))
        for industry in rng.sample(industries, rng.randint(1, 2)):
            b.link("business.business_operation.industry", company, industry)
        for founder in rng.sample(people, rng.randint(1, 2)):
            b.link("organization.organization.founders", company, founder)
            b.link("people.person.profession", founder, "Entrepreneur")
    for person in people:
        if rng.random() < 0.4:
            b.link("people.person.employer", person, rng.choice(companies))


def _films(b: _Builder, people, countries, genres, n: int) -> None:
    rng = b.rng
    actors = rng.sample(people, len(people) // 4)
    directors = rng.sample(actors, len(actors) // 8) + rng.sample(people, len(people) // 12)
    for _ in range(n):
        film = b.entity(
            FILM,
            lambda: rng.choice(
                (
                    f"The {rng.choice(ADJ)} {rng.choice(NOUN)}",
                    f"{rng.choice(NOUN)} of the {rng.choice(NOUN)}",
                    f"{rng.choice(ADJ)} {rng.choice(NOUN)}",
                )
            ),
        )
        director = rng.choice(directors)
        b.link("film.film.directed_by", film, director)
        b.link("people.person.profession", director, "Film director")
        for actor in rng.sample(actors, rng.randint(2, 4)):
            b.link("film.film.starring", film, actor)
            b.link("people.person.profession", actor, "Actor")
        for genre in rng.sample(genres, rng.randint(1, 2)):
            b.link("film.film.genre", film, genre)
        b.link("film.film.country", film, rng.choice(countries))


def _teams(b: _Builder, people, cities, sports, n: int) -> None:
    rng = b.rng
    athletes = rng.sample(people, len(people) // 4)
    for _ in range(n):
        city = rng.choice(cities)
        team = b.entity(TEAM, lambda city=city: f"{city} {rng.choice(MASCOTS)}")
        b.link("sports.sports_team.location", team, city)
        b.link("sports.sports_team.sport", team, rng.choice(sports))
        for athlete in rng.sample(athletes, rng.randint(4, 6)):
            b.link("sports.sports_team.roster", team, athlete)
            b.link("people.person.profession", athlete, "Athlete")


@lru_cache(maxsize=4)
def _graph(seed: int, scale: int, triples_path: str | None) -> KnowledgeGraph:
    if triples_path is not None:
        return KnowledgeGraph.from_tsv(triples_path)
    return generate_graph(seed, scale)


def graph_for(config: KGConfig) -> KnowledgeGraph:
    """The config's graph, built once per process (a file graph ignores seed and scale)."""
    if config.triples_path is not None:
        return _graph(0, 1, str(Path(config.triples_path).expanduser().resolve()))
    return _graph(config.seed, config.scale, None)
