"""Questions over the graph: their text, the expert's tool calls, seeded generation."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from agentray.envs.generate import Redraw, generate_split_tasks
from agentray.envs.kg.build import graph_for
from agentray.envs.kg.config import TYPE_WEIGHTS, KGConfig
from agentray.envs.kg.graph import KnowledgeGraph
from agentray.envs.kg.schema import ATTRIBUTE_NOUNS, RELATIONS, TYPE_NOUNS
from agentray.types import TaskSpec


def type_noun(type_name: str, plural: bool = False) -> str:
    if type_name in TYPE_NOUNS:
        return TYPE_NOUNS[type_name][plural]
    noun = type_name.rsplit(".", 1)[-1].replace("_", " ")
    if not plural:
        return noun
    if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou"):
        return noun[:-1] + "ies"
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def attribute_noun(attribute: str) -> str:
    return ATTRIBUTE_NOUNS.get(attribute) or attribute.rsplit(".", 1)[-1].replace("_", " ")


def clause(relation: str, subject: str, plural: bool = False) -> str:
    """How what ``relation`` reaches from ``subject`` is described: "was born in Korvel"."""
    if relation in RELATIONS:
        rel = RELATIONS[relation]
        return (rel.plural if plural else rel.singular).format(subject)
    phrase = relation.rsplit(".", 1)[-1].replace("_", " ")
    return f"{'are' if plural else 'is'} the {phrase} of {subject}"


def problem_text(payload: dict[str, Any]) -> str:
    """AgentBench's problem turn: the question, then the entities it mentions."""
    return f"A new question: {payload['question']}\nEntities: [{', '.join(payload['entities'])}]"


def _act(thought: str, call: str) -> str:
    return f"Thought: {thought}\nAction: {call}"


def _explore(entity: str, relation: str, graph: KnowledgeGraph, target: str) -> list[str]:
    """get_relations then get_neighbors from ``entity`` (an entity name or ``#k``)."""
    kind = "variable" if entity.startswith("#") else "entity"
    noun = type_noun(graph.range_of(relation), plural=True)
    return [
        _act(
            f"I need to find {target}. To achieve this, I will query the KB to find relations "
            f"connected to the {kind} '{entity}' and see if any of them can help me find the answer.",
            f"get_relations({entity})",
        ),
        _act(
            f"From the above relations, I might use {relation} to find the {noun} I need.",
            f"get_neighbors({entity}, {relation})",
        ),
    ]


def _final(k: int, noun: str) -> str:
    return f"Thought: #{k} is the final answer to the question, which represents the target {noun}.\nFinal Answer: #{k}"


@dataclass
class _Gen:
    rng: random.Random
    graph: KnowledgeGraph
    max_answers: int

    def start(self) -> tuple[str, str, frozenset[str]]:
        """A mentionable entity, one of its relations and what that relation reaches."""
        entity = self.rng.choice(self.graph.starts)
        relation = self.rng.choice(sorted(self.graph.edges[entity]))
        return entity, relation, self.graph.neighbors([entity], relation)

    def noun(self, relation: str, plural: bool = False) -> str:
        return type_noun(self.graph.range_of(relation), plural)


def _one_hop(g: _Gen) -> dict[str, Any]:
    e, r, answer = g.start()
    if not 1 <= len(answer) <= g.max_answers:
        raise Redraw
    noun = g.noun(r)
    question = f"which {noun} {clause(r, e)}?"
    actions = [*_explore(e, r, g.graph, f"the {noun} that {clause(r, e)}"), _final(0, noun)]
    return _payload("one_hop", question, [e], answer, actions)


def _two_hop(g: _Gen) -> dict[str, Any]:
    e, r1, middle = g.start()
    if not 1 <= len(middle) <= 20:
        raise Redraw
    r2 = g.rng.choice(g.graph.relations_of(middle))
    answer = g.graph.neighbors(middle, r2)
    if not 1 <= len(answer) <= g.max_answers or e in answer or answer == middle:
        raise Redraw  # going back to the start (or staying put) makes a degenerate question
    inner = f"the {g.noun(r1)} that {clause(r1, e)}"
    noun = g.noun(r2)
    question = f"which {noun} {clause(r2, inner)}?"
    actions = [
        *_explore(e, r1, g.graph, inner),
        *_explore("#0", r2, g.graph, f"the {noun} that {clause(r2, inner)}"),
        _final(1, noun),
    ]
    return _payload("two_hop", question, [e], answer, actions)


def _intersection(g: _Gen) -> dict[str, Any]:
    e1, r1, first = g.start()
    if not first or len(first) > 40:
        raise Redraw
    member = g.rng.choice(sorted(first))
    kind = g.graph.range_of(r1)
    options = [
        (head, rel)
        for head, rel in g.graph.incoming.get(member, ())
        if head != e1 and g.graph.range_of(rel) == kind and head in g.graph.mentionable_set
    ]
    if not options:
        raise Redraw
    e2, r2 = g.rng.choice(options)
    second = g.graph.neighbors([e2], r2)
    answer = first & second
    if answer in (first, second) or len(answer) > g.max_answers:
        raise Redraw  # both conditions must matter
    noun = g.noun(r1)
    question = f"which {noun} {clause(r1, e1)} and {clause(r2, e2)}?"
    actions = [
        *_explore(e1, r1, g.graph, f"the {g.noun(r1, True)} that {clause(r1, e1, True)}"),
        *_explore(e2, r2, g.graph, f"the {g.noun(r2, True)} that {clause(r2, e2, True)}"),
        _act(
            f"The {g.noun(r1, True)} satisfying both conditions should be the intersection of "
            "variable #0 and variable #1.",
            "intersection(#0, #1)",
        ),
        _final(2, noun),
    ]
    return _payload("intersection", question, [e1, e2], answer, actions)


def _count(g: _Gen) -> dict[str, Any]:
    e, r, members = g.start()
    if len(members) < 2:
        raise Redraw
    plural = g.noun(r, True)
    question = f"how many {plural} {clause(r, e, True)}?"
    actions = [
        *_explore(e, r, g.graph, f"the {plural} that {clause(r, e, True)}"),
        _act(f"The answer is the number of {plural} in variable #0.", "count(#0)"),
        _final(1, "number"),
    ]
    return _payload("count", question, [e], [str(len(members))], actions)


def _superlative(g: _Gen, highest: bool) -> dict[str, Any]:
    e, r, members = g.start()
    attributes = g.graph.attributes_of(members)
    if not 2 <= len(members) <= 40 or not attributes:
        raise Redraw
    attribute = g.rng.choice(attributes)
    having = [m for m in members if attribute in g.graph.attrs.get(m, {})]
    answer = g.graph.extreme(members, attribute, highest)
    if len(having) < 2 or len(answer) != 1:
        raise Redraw  # a tie, or nothing to compare
    noun, plural = g.noun(r), g.noun(r, True)
    word, tool = ("highest", "argmax") if highest else ("lowest", "argmin")
    question = f"which {noun} that {clause(r, e)} has the {word} {attribute_noun(attribute)}?"
    actions = [
        *_explore(e, r, g.graph, f"the {plural} that {clause(r, e, True)}"),
        _act(
            f"I need to compare the {plural} in variable #0, so I will find their numerical attributes.",
            "get_attributes(#0)",
        ),
        _act(
            f"From the above attributes, I might use {attribute} to find the {noun} with the "
            f"{word} {attribute_noun(attribute)}.",
            f"{tool}(#0, {attribute})",
        ),
        _final(1, noun),
    ]
    return _payload(tool, question, [e], answer, actions)


_MAKERS: dict[str, Callable[[_Gen], dict[str, Any]]] = {
    "one_hop": _one_hop,
    "two_hop": _two_hop,
    "intersection": _intersection,
    "count": _count,
    "argmax": lambda g: _superlative(g, True),
    "argmin": lambda g: _superlative(g, False),
}


def _payload(qtype, question, entities, answer, actions) -> dict[str, Any]:
    return {
        "qtype": qtype,
        "question": question,
        "entities": list(entities),
        "answer": sorted(answer),
        "actions": actions,
    }


def make_payload(rng: random.Random, graph: KnowledgeGraph, config: KGConfig) -> dict[str, Any]:
    """One question; tries each allowed type (weighted order) a few times before redrawing."""
    if not graph.starts:
        raise ValueError("the knowledge graph has no entity a question can mention")
    types = list(dict.fromkeys(config.question_types))
    order: list[str] = []
    while types:
        pick = rng.choices(types, weights=[TYPE_WEIGHTS[t] for t in types])[0]
        order.append(pick)
        types.remove(pick)
    gen = _Gen(rng, graph, config.max_answers)
    for qtype in order:
        for _ in range(20):
            try:
                return _MAKERS[qtype](gen)
            except Redraw:
                continue
    raise Redraw


@lru_cache(maxsize=16)
def all_tasks(config_json: str) -> dict[str, list[TaskSpec]]:
    config = KGConfig.model_validate_json(config_json)
    graph = graph_for(config)
    return generate_split_tasks(
        "kg", config, lambda rng: make_payload(rng, graph, config), problem_text
    )
