"""The knowledge graph: entities, relations, attributes and their lookups."""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from pathlib import Path

SCHEMA_PREFIXES = ("type.", "common.", "freebase.")


_DATE = re.compile(r"^(-?\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


_NUMERIC_TYPES = frozenset({"type.int", "type.float", "type.datetime"})


def parse_number(text: str) -> float | None:
    """A finite number, or an ISO date (``1967``, ``1967-05``, ``1967-05-01``) as a fractional year."""
    text = text.strip()
    match = _DATE.match(text)
    if match:
        year, month, day = (int(g) if g else 1 for g in match.groups())
        return year + (month - 1) / 12 + (day - 1) / 372
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def mentionable(name: str) -> bool:
    """Whether AgentBench's argument parser can pass ``name`` through unbroken."""
    return (
        bool(name)
        and name == name.strip()
        and not name.startswith("#")
        and not any(c in name for c in ",()\n\t")
        and "ariable " not in name
        and "Observation:" not in name
    )


class KnowledgeGraph:
    """Entities (by unique name) with typed out-edges, numeric attributes and types.

    Relations are directed; a Freebase-style graph stores each fact in both directions under
    two names (``people.person.place_of_birth`` and ``location.location.people_born_here``).
    Every relation has a range type: what the neighbours it reaches are instances of.
    """

    def __init__(self) -> None:
        self.edges: dict[str, dict[str, set[str]]] = {}
        self.attrs: dict[str, dict[str, float]] = {}
        self.types: dict[str, set[str]] = defaultdict(set)
        self.ranges: dict[str, str] = {}

    def add_edge(self, head: str, relation: str, tail: str) -> None:
        self.edges.setdefault(head, {}).setdefault(relation, set()).add(tail)

    def add_attr(self, entity: str, attribute: str, value: float) -> None:
        self.attrs.setdefault(entity, {})[attribute] = value

    # ------------------------------------------------------------------ the tools' queries

    def relations_of(self, members: Iterable[str]) -> list[str]:
        found: set[str] = set()
        for m in members:
            found.update(self.edges.get(m, ()))
        return sorted(found)

    def neighbors(self, members: Iterable[str], relation: str) -> frozenset[str]:
        out: set[str] = set()
        for m in members:
            out.update(self.edges.get(m, {}).get(relation, ()))
        return frozenset(out)

    def attributes_of(self, members: Iterable[str]) -> list[str]:
        found: set[str] = set()
        for m in members:
            found.update(self.attrs.get(m, ()))
        return sorted(found)

    def extreme(self, members: Iterable[str], attribute: str, highest: bool) -> frozenset[str]:
        """The members with the largest (smallest) value; members without it are skipped."""
        values = {
            m: self.attrs[m][attribute] for m in members if attribute in self.attrs.get(m, {})
        }
        if not values:
            return frozenset()
        best = max(values.values()) if highest else min(values.values())
        return frozenset(m for m, v in values.items() if v == best)

    def range_of(self, relation: str) -> str:
        return self.ranges.get(relation, "common.topic")

    # ------------------------------------------------------------------ for the generator

    @cached_property
    def incoming(self) -> dict[str, list[tuple[str, str]]]:
        """tail -> sorted (head, relation) pairs that reach it."""
        inc: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for head in sorted(self.edges):
            for relation in sorted(self.edges[head]):
                for tail in self.edges[head][relation]:
                    inc[tail].append((head, relation))
        for pairs in inc.values():
            pairs.sort()
        return dict(inc)

    @cached_property
    def starts(self) -> list[str]:
        """Entities a question can mention: a safe name and at least one relation."""
        return sorted(e for e, rels in self.edges.items() if rels and mentionable(e))

    @cached_property
    def mentionable_set(self) -> frozenset[str]:
        return frozenset(self.starts)

    # ------------------------------------------------------------------ TSV in and out

    def triples(self) -> Iterator[tuple[str, str, str]]:
        """The whole graph as triples, schema rows included; ``from_triples`` reads them back."""
        for relation in sorted(self.ranges):
            yield relation, "type.property.expected_type", self.ranges[relation]
        for entity in sorted(self.types):
            for t in sorted(self.types[entity]):
                yield entity, "type.object.type", t
        for head in sorted(self.edges):
            for relation in sorted(self.edges[head]):
                for tail in sorted(self.edges[head][relation]):
                    yield head, relation, tail
        for entity in sorted(self.attrs):
            for attribute, value in sorted(self.attrs[entity].items()):
                yield entity, attribute, _format_number(value)

    def write_tsv(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for row in self.triples():
                f.write("\t".join(row) + "\n")

    @classmethod
    def from_tsv(cls, path: str | Path) -> KnowledgeGraph:
        return cls.from_triples(_read_tsv(path))

    @classmethod
    def from_triples(cls, rows: Iterable[tuple[str, str, str]]) -> KnowledgeGraph:
        """Build a graph from (head, relation, tail) triples, Freebase conventions understood.

        - ``x type.object.type T``: x is an instance of T.
        - ``x type.object.name N``: x is shown as N (where N is unique; ids like ``m.0abc``).
        - ``r type.property.expected_type T``: r's range (else inferred from its tails' types,
          else from the prefix of their relations); numeric T makes r an attribute.
        - other ``type.`` / ``common.`` / ``freebase.`` rows are skipped.
        - a relation whose tails all parse as numbers (or ISO dates) is an attribute.

        Reverse edges are not invented: include both directions to navigate both ways.
        """
        names: dict[str, str] = {}
        declared_types: dict[str, set[str]] = defaultdict(set)
        expected: dict[str, str] = {}
        facts: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for head, relation, tail in rows:
            if relation == "type.object.name":
                names.setdefault(head, tail)
            elif relation == "type.object.type":
                declared_types[head].add(tail)
            elif relation == "type.property.expected_type":
                expected[head] = tail
            elif not relation.startswith(SCHEMA_PREFIXES):
                facts[relation].append((head, tail))
        show = _display_names(names, facts, declared_types)
        graph = cls()
        for entity, types in declared_types.items():
            graph.types[show(entity)].update(types)
        entity_relations: list[str] = []
        for relation, pairs in facts.items():
            numbers = [parse_number(t) for _, t in pairs]
            is_attr = expected.get(relation) in _NUMERIC_TYPES or (
                relation not in expected and all(n is not None for n in numbers)
            )
            if not is_attr:
                entity_relations.append(relation)
            for (head, tail), number in zip(pairs, numbers, strict=True):
                if not is_attr:
                    graph.add_edge(show(head), relation, show(tail))
                elif number is not None:
                    graph.add_attr(show(head), relation, number)
        sizes = Counter(t for types in graph.types.values() for t in types)
        for relation in entity_relations:  # after all edges: inference looks at the tails' edges
            graph.ranges[relation] = expected.get(relation) or _infer_range(
                graph, {show(t) for _, t in facts[relation]}, sizes
            )
        return graph


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _read_tsv(path: str | Path) -> Iterator[tuple[str, str, str]]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                raise ValueError(f"{path}:{number}: expected head<TAB>relation<TAB>tail")
            yield parts[0].strip(), parts[1].strip(), parts[2].strip()


def _display_names(
    names: dict[str, str], facts: dict[str, list[tuple[str, str]]], types: dict[str, set[str]]
) -> Callable[[str], str]:
    """id -> shown name: its type.object.name where unique and no other id's spelling."""
    ids = set(types) | set(names)
    for pairs in facts.values():
        for head, tail in pairs:
            ids.update((head, tail))
    counts = Counter(names.values())
    mapping = {i: n for i, n in names.items() if counts[n] == 1 and (n == i or n not in ids)}
    return lambda entity: mapping.get(entity, entity)


def _infer_range(graph: KnowledgeGraph, tails: set[str], sizes: Counter[str]) -> str:
    common: set[str] | None = None
    for tail in tails:
        types = graph.types.get(tail, set())
        common = set(types) if common is None else common & types
    if common:
        return min(common, key=lambda t: (sizes[t], t))  # the most specific shared type
    prefixes = Counter(r.rsplit(".", 1)[0] for t in tails for r in graph.edges.get(t, ()))
    if prefixes:
        return min(prefixes, key=lambda p: (-prefixes[p], p))
    return "common.topic"
