"""An episode's state (variables) and AgentBench's KG tools on it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from agentray.envs.kg.graph import KnowledgeGraph
from agentray.envs.kg.prompt import NO_FUNCTION, NOT_EXECUTED


@dataclass(frozen=True)
class Variable:
    """A query result: a set of entities of one type, or (from ``count``) a number."""

    type: str
    program: str  # AgentBench's s-expression; it keys the relation/attribute caches
    members: frozenset[str] = frozenset()
    number: int | None = None


@dataclass(frozen=True)
class Entity:
    name: str


class ToolError(Exception):
    """A tool call that AgentBench would answer with "... cannot be executed"."""


class Episode:
    """The variables and caches of one episode, and the seven tools over them."""

    def __init__(self, graph: KnowledgeGraph, entities: list[str]) -> None:
        self.graph = graph
        self.entities = set(entities)
        self.variables: list[Variable] = []
        self.relation_cache: dict[str, set[str]] = {}
        self.attribute_cache: dict[str, set[str]] = {}

    # ------------------------------------------------------------------ arguments

    def resolve(self, raw: str) -> Variable | Entity | str:
        arg = raw.replace("variable ", "").replace("Variable ", "").strip()
        if arg.startswith("#"):
            try:
                index = int(arg[1:])
                if index < 0:
                    raise IndexError
                return self.variables[index]
            except (ValueError, IndexError) as e:
                raise ToolError(f"no variable {arg}") from e
        return Entity(arg) if arg in self.entities else arg

    def _members(self, x: Variable | Entity | str) -> tuple[str, frozenset[str]]:
        if isinstance(x, Entity):
            return x.name, frozenset([x.name])
        if isinstance(x, Variable) and x.number is None:
            return x.program, x.members
        raise ToolError("expected an entity of the question or a variable")

    def _set_variable(self, x: Variable | Entity | str) -> Variable:
        if isinstance(x, Variable) and x.number is None:
            return x
        raise ToolError("expected a variable")

    def _new(self, variable: Variable) -> str:
        self.variables.append(variable)
        k = len(self.variables) - 1
        if variable.number is not None:
            return f"Observation: variable #{k}, which is a number"
        return f"Observation: variable #{k}, which are instances of {variable.type}"

    # ------------------------------------------------------------------ the tools

    def get_relations(self, x) -> str:
        key, members = self._members(x)
        relations = self.graph.relations_of(members)
        self.relation_cache[key] = set(relations)
        return f"Observation: [{', '.join(relations)}]"

    def get_neighbors(self, x, relation) -> str:
        key, members = self._members(x)
        if not isinstance(relation, str) or relation not in self.relation_cache.get(key, ()):
            raise ToolError("the relation must come from get_relations of this variable")
        neighbors = self.graph.neighbors(members, relation)
        program = f"(JOIN {relation}_inv {key})"
        return self._new(Variable(self.graph.range_of(relation), program, neighbors))

    def intersection(self, a, b) -> str:
        a, b = self._set_variable(a), self._set_variable(b)
        if a.type != b.type:
            raise ToolError("the two variables must have the same type")
        program = f"(AND {a.program} {b.program})"
        return self._new(Variable(a.type, program, a.members & b.members))

    def get_attributes(self, x) -> str:
        x = self._set_variable(x)
        attributes = self.graph.attributes_of(x.members)
        self.attribute_cache[x.program] = set(attributes)
        return f"Observation: [{', '.join(attributes)}]"

    def _superlative(self, x, attribute, highest: bool) -> str:
        x = self._set_variable(x)
        if not isinstance(attribute, str) or attribute not in self.attribute_cache.get(
            x.program, ()
        ):
            raise ToolError("the attribute must come from get_attributes of this variable")
        members = self.graph.extreme(x.members, attribute, highest)
        program = f"({'ARGMAX' if highest else 'ARGMIN'} {x.program} {attribute})"
        return self._new(Variable(x.type, program, members))

    def argmax(self, x, attribute) -> str:
        return self._superlative(x, attribute, True)

    def argmin(self, x, attribute) -> str:
        return self._superlative(x, attribute, False)

    def count(self, x) -> str:
        x = self._set_variable(x)
        return self._new(Variable("type.int", f"(COUNT {x.program})", number=len(x.members)))


TOOLS: dict[str, Callable[..., str]] = {
    "get_relations": Episode.get_relations,
    "get_neighbors": Episode.get_neighbors,
    "intersection": Episode.intersection,
    "get_attributes": Episode.get_attributes,
    "argmax": Episode.argmax,
    "argmin": Episode.argmin,
    "count": Episode.count,
}


_ARITY = {
    "get_relations": 1,
    "get_neighbors": 2,
    "intersection": 2,
    "get_attributes": 1,
    "argmax": 2,
    "argmin": 2,
    "count": 1,
}


def clean_reply(text: str) -> str:
    """What AgentBench keeps of a reply: the part before any "Observation:", ``\\_`` unescaped."""
    return text.split("Observation:")[0].replace("\\_", "_")


def final_answer_id(text: str) -> int | None:
    found = re.findall(r"(?:Find|Final) Answer: #(\d+)", text)
    return int(found[0]) if found else None


def run_action(episode: Episode, text: str) -> tuple[str, str | None]:
    """AgentBench's action loop on a cleaned reply: (observation, error or None).

    The first line starting with ``Action...:`` is used; its first function call that runs is
    executed, and the error message of the last one that failed is shown otherwise.
    """
    for line in text.split("\n"):
        if not re.match(r"Action.*?:", line):
            continue
        message = NOT_EXECUTED
        for name in re.findall(r"(\w+)\(", line):
            found = re.findall(rf"{name}\((.+?)\)", line)
            if not found:
                message = (
                    f"I may make a syntax error when calling {name} (e.g., unmatched parenthesis). "
                    "I need to fix it and reuse the tool"
                )
                continue
            raw_args = re.split(r"\s*,\s*", found[0])
            try:
                return _call(episode, name, raw_args), None
            except ToolError:
                message = _cannot(name, raw_args)
        return message, "tool call failed"
    return NO_FUNCTION, "no action"


def call_problem(text: str) -> str | None:
    """Whether the action line ``run_action`` would use calls a known tool with its arity
    (whether the call then succeeds depends on the episode's variables)."""
    line = next((ln for ln in text.split("\n") if re.match(r"Action.*?:", ln)), None)
    if line is None:
        return "no `Action:` line and no `Final Answer: #n`"
    for name in re.findall(r"(\w+)\(", line):
        found = re.findall(rf"{name}\((.+?)\)", line)
        if found and name in TOOLS and len(re.split(r"\s*,\s*", found[0])) == _ARITY[name]:
            return None
    return "the action line calls no known tool with its arguments"


def _call(episode: Episode, name: str, raw_args: list[str]) -> str:
    if name not in TOOLS or len(raw_args) != _ARITY[name]:
        raise ToolError(f"unknown tool or wrong arity: {name}")
    args = [episode.resolve(a) for a in raw_args]
    return TOOLS[name](episode, *args)


def _cannot(name: str, raw_args: list[str]) -> str:
    call = f"{name}({', '.join(raw_args)}) cannot be executed."
    if name == "intersection":
        return f"{call} The two variables are not of the same type. You may further explore them by call get_relations"
    return f"{call} You may make a mistake and need to fix it."
