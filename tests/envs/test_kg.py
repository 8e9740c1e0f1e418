"""The KG family: generation, the seven tools, AgentBench's error handling, scoring, TSV graphs."""

from __future__ import annotations

import json
import random

import pytest
from pydantic import ValidationError

from agentray.envs.base import Env
from agentray.envs.kg import KGConfig, KGEnv
from agentray.envs.kg.build import generate_graph
from agentray.envs.kg.config import QUESTION_TYPES
from agentray.envs.kg.graph import KnowledgeGraph, parse_number
from agentray.envs.kg.prompt import (
    INSTRUCTIONS,
    INVALID_VARIABLE,
    NO_FUNCTION,
    NOT_EXECUTED,
    ONE_SHOT,
)
from agentray.envs.kg.score import f1_score
from agentray.types import Status, TaskSpec

SAMPLE = KGConfig(n_train=40, n_test=20, seed=3)


def _act(call: str) -> str:
    return f"Thought: let me try this.\nAction: {call}"


def _first(env: KGEnv, qtype: str) -> TaskSpec:
    return next(t for t in env.tasks("train") + env.tasks("test") if t.payload["qtype"] == qtype)


def _play(env: KGEnv, task: TaskSpec, actions: list[str]):
    env.reset(task)
    results = [env.step(a) for a in actions]
    return results[-1], results


def test_expert_solves_every_sampled_task():
    env = KGEnv(SAMPLE)
    tasks = env.tasks("train") + env.tasks("test")
    assert len(tasks) == 60
    assert {t.payload["qtype"] for t in tasks} == set(QUESTION_TYPES)
    for task in tasks:
        actions = env.expert_actions(task)
        assert len(actions) <= 15
        result, steps = _play(env, task, actions)
        assert all(not s.done and s.status == Status.RUNNING for s in steps[:-1]), task.id
        assert result.done and result.status == Status.COMPLETED, (task.id, result)
        assert result.reward == 1.0 and result.info["exact_match"], (task.id, result.info)
        assert result.info["invalid_actions"] == 0
        assert result.info["predicted"] == task.payload["answer"]


def test_generation_is_deterministic_with_disjoint_unique_splits():
    a, b = KGEnv(SAMPLE), KGEnv(SAMPLE)
    train, test = a.tasks("train"), a.tasks("test")
    assert [t.model_dump() for t in train + test] == [
        t.model_dump() for t in b.tasks("train") + b.tasks("test")
    ]
    assert [t.id for t in train] == [f"kg_{i}" for i in range(40)]
    assert [t.id for t in test] == [f"kg_{i}" for i in range(40, 60)]
    assert {t.split for t in train} == {"train"} and {t.split for t in test} == {"test"}
    problems = [a.prompt(t)[-1]["content"] for t in train + test]
    assert len(set(problems)) == len(problems)
    json.dumps([t.payload for t in train + test])  # payloads cross parquet / Ray as JSON
    other = KGEnv(KGConfig(n_train=40, n_test=20, seed=4))
    assert [t.payload for t in other.tasks("train")] != [t.payload for t in train]
    assert list(generate_graph(3).triples()) == list(generate_graph(3).triples())
    assert list(generate_graph(3).triples()) != list(generate_graph(4).triples())
    bigger = KGEnv(KGConfig(n_train=40, n_test=25, seed=3))
    assert [t.payload for t in bigger.tasks("train")] == [t.payload for t in train]
    assert [t.payload for t in bigger.tasks("test")[:20]] == [t.payload for t in test]


def test_config_rejects_unknown_fields_and_bad_question_types():
    with pytest.raises(ValidationError, match="not_a_field"):
        KGConfig(not_a_field=1)
    with pytest.raises(ValidationError, match="question_types"):
        KGConfig(question_types=["three_hop"])
    with pytest.raises(ValidationError, match="at least one"):
        KGConfig(question_types=[])
    assert KGConfig().max_rounds == 15
    only = KGEnv(KGConfig(n_train=6, n_test=2, question_types=["count"]))
    assert {t.payload["qtype"] for t in only.tasks("train")} == {"count"}


def test_prompt_layout_is_agentbench_with_unique_problems():
    env = KGEnv(SAMPLE)
    task = env.tasks("test")[0]
    messages = env.prompt(task)
    assert messages[0] == {"role": "user", "content": INSTRUCTIONS}
    assert messages[1]["role"] == "assistant" and messages[1]["loss"] is False
    demo = messages[2:-1]
    assert [m["content"] for m in demo] == ONE_SHOT
    assert [m["role"] for m in demo] == ["user", "assistant"] * 8
    assert all(m["loss"] is False for m in messages if m["role"] == "assistant")
    assert all("loss" not in m for m in messages if m["role"] == "user")
    assert messages[-1]["content"] == (
        f"A new question: {task.payload['question']}\n"
        f"Entities: [{', '.join(task.payload['entities'])}]"
    )
    assert (
        Env.problem_of([*messages, {"role": "assistant", "content": "x"}])
        == (messages[-1]["content"])
    )
    every = env.tasks("train") + env.tasks("test")
    assert len({Env.problem_of(env.prompt(t)) for t in every}) == len(every)
    plain = KGEnv(KGConfig(n_train=2, n_test=1, one_shot=False))
    assert [m["role"] for m in plain.prompt(plain.tasks("train")[0])] == [
        "user",
        "assistant",
        "user",
    ]


def test_observations_follow_agentbench_format():
    env = KGEnv(SAMPLE)
    task = _first(env, "count")
    entity = task.payload["entities"][0]
    graph = env.graph
    env.reset(task)
    result = env.step(_act(f"get_relations({entity})"))
    relations = sorted(graph.edges[entity])
    assert result.observation == f"Observation: [{', '.join(relations)}]"
    relation = relations[0]
    result = env.step(_act(f"get_neighbors({entity}, {relation})"))
    assert result.observation == (
        f"Observation: variable #0, which are instances of {graph.range_of(relation)}"
    )
    assert result.status == Status.RUNNING and not result.done
    result = env.step(_act("count(variable #0)"))
    assert result.observation == "Observation: variable #1, which is a number"
    result = env.step("Thought: done.\nFinal Answer: #1")
    assert result.info["predicted"] == [str(len(graph.edges[entity][relation]))]


def test_superlatives_and_attributes():
    env = KGEnv(SAMPLE)
    task = _first(env, "argmin")
    graph = env.graph
    env.reset(task)
    for action in env.expert_actions(task)[:2]:  # get_relations, get_neighbors -> #0
        env.step(action)
    members = env._episode.variables[0].members
    result = env.step(_act("get_attributes(#0)"))
    assert result.observation == f"Observation: [{', '.join(graph.attributes_of(members))}]"
    attribute = graph.attributes_of(members)[0]
    values = {m: graph.attrs[m][attribute] for m in members if attribute in graph.attrs.get(m, {})}
    env.step(_act(f"argmax(#0, {attribute})"))
    env.step(_act(f"argmin(#0, {attribute})"))
    highest, lowest = env._episode.variables[1], env._episode.variables[2]
    assert {values[m] for m in highest.members} == {max(values.values())}
    assert {values[m] for m in lowest.members} == {min(values.values())}
    assert highest.type == lowest.type == env._episode.variables[0].type


def test_invalid_actions_get_an_error_observation_and_the_episode_goes_on():
    env = KGEnv(SAMPLE.model_copy(update={"max_rounds": 20}))  # room for 11 mistakes
    task = _first(env, "argmax")
    entity = task.payload["entities"][0]
    relation = sorted(env.graph.edges[entity])[0]
    bad = [
        ("I am not sure what to do.", NO_FUNCTION),
        ("Action: think harder", NOT_EXECUTED),
        (_act("count()"), "I may make a syntax error when calling count"),
        (
            _act("get_relations(Nobody In The Question)"),
            "get_relations(Nobody In The Question) cannot be executed.",
        ),
        (
            _act(f"get_neighbors({entity}, {relation})"),
            "cannot be executed",
        ),  # no get_relations yet
        (_act("get_relations(#4)"), "get_relations(#4) cannot be executed."),
        (_act(f"get_attributes({entity})"), "cannot be executed"),  # an entity, not a variable
        (_act(f"fly_to({entity})"), f"fly_to({entity}) cannot be executed."),
        (_act(f"get_relations({entity}, {relation})"), "cannot be executed"),  # wrong arity
        ("Thought: the answer is ready.\nFinal Answer: #5", INVALID_VARIABLE),
    ]
    env.reset(task)
    for n, (reply, expected) in enumerate(bad, 1):
        result = env.step(reply)
        assert expected in result.observation, (reply, result.observation)
        assert not result.done and result.status == Status.AGENT_INVALID_ACTION
        assert result.info["invalid_actions"] == n and result.reward == 0.0
    plan = env.expert_actions(task)  # relations, neighbors, attributes, argmax, answer
    env.step(plan[0])
    env.step(plan[1])
    attribute = plan[3].split(", ")[-1].rstrip(")")
    result = env.step(_act(f"argmax(#0, {attribute})"))  # before get_attributes(#0)
    assert (
        result.status == Status.AGENT_INVALID_ACTION and "cannot be executed" in result.observation
    )
    for action in plan[2:]:
        result = env.step(action)
    assert result.status == Status.COMPLETED and result.reward == 1.0
    assert result.info["invalid_actions"] == len(bad) + 1


def test_intersection_of_different_types_is_refused():
    env = KGEnv(SAMPLE)
    task = _first(env, "two_hop")
    env.reset(task)
    plan = env.expert_actions(task)
    for action in plan[:4]:  # #0 and #1 have different types in a two-hop question
        env.step(action)
    first, second = env._episode.variables
    assert first.type != second.type
    result = env.step(_act("intersection(#0, #1)"))
    assert result.observation == (
        "intersection(#0, #1) cannot be executed. The two variables are not of the same type. "
        "You may further explore them by call get_relations"
    )
    result = env.step(_act("intersection(#1, #1)"))
    assert result.observation.startswith("Observation: variable #2, which are instances of")


def test_reply_is_cut_at_observation_and_unescaped():
    env = KGEnv(SAMPLE)
    task = _first(env, "one_hop")
    entity = task.payload["entities"][0]
    env.reset(task)
    reply = (
        f"Thought: relations first.\nAction: get\\_relations({entity})\n"
        "Observation: [made.up.relation]\nFinal Answer: #0"  # the made-up part is ignored
    )
    result = env.step(reply)
    assert result.status == Status.RUNNING and "made.up" not in result.observation
    assert result.observation.startswith("Observation: [")


def test_f1_scoring_partial_and_wrong_answers():
    assert f1_score({"a", "b"}, {"a", "b"}) == 1.0
    assert f1_score({"a", "b", "c", "d"}, {"a"}) == pytest.approx(0.4)
    assert f1_score(set(), {"a"}) == 0.0 and f1_score({"x"}, {"a"}) == 0.0
    env = KGEnv(SAMPLE)
    task = _first(env, "intersection")
    plan = env.expert_actions(task)
    result, _ = _play(env, task, [*plan[:2], "Thought: done.\nFinal Answer: #0"])
    first = env.graph.neighbors(task.payload["entities"][:1], plan[1].split(", ")[-1].rstrip(")"))
    gold = set(task.payload["answer"])
    assert result.status == Status.COMPLETED and not result.info["exact_match"]
    assert result.reward == pytest.approx(f1_score(set(first), gold)) and 0 < result.reward < 1
    count = _first(env, "count")
    plan = env.expert_actions(count)
    result, _ = _play(env, count, [*plan[:2], "Final Answer: #0"])  # the set, not its size
    assert result.status == Status.COMPLETED and result.reward == 0.0


def test_round_limit_gives_task_limit_reached():
    env = KGEnv(KGConfig(n_train=2, n_test=1, max_rounds=3))
    task = env.tasks("train")[0]
    env.reset(task)
    entity = task.payload["entities"][0]
    assert not env.step(_act(f"get_relations({entity})")).done
    assert not env.step("no action here").done
    result = env.step(_act(f"get_relations({entity})"))
    assert result.done and result.status == Status.TASK_LIMIT_REACHED and result.reward == 0.0
    assert result.observation.startswith("Observation: [") and result.info["f1"] == 0.0
    assert env.step("Final Answer: #0").status == Status.TASK_ERROR  # the episode is over


def test_step_without_reset_is_a_task_error():
    result = KGEnv(SAMPLE).step("Final Answer: #0")
    assert result.done and result.status == Status.TASK_ERROR


def test_generated_graph_round_trips_through_tsv(tmp_path):
    path = tmp_path / "kg.tsv"
    generate_graph(5).write_tsv(path)
    loaded = KnowledgeGraph.from_tsv(path)
    original = generate_graph(5)
    assert loaded.edges == original.edges and loaded.attrs == original.attrs
    assert loaded.ranges == original.ranges
    from_file = KGEnv(KGConfig(n_train=10, n_test=5, seed=5, triples_path=str(path)))
    generated = KGEnv(KGConfig(n_train=10, n_test=5, seed=5))
    assert [t.payload for t in from_file.tasks("train") + from_file.tasks("test")] == [
        t.payload for t in generated.tasks("train") + generated.tasks("test")
    ]


FREEBASE_ROWS = [
    ("m.01", "type.object.name", "Ada Lovelace"),
    ("m.01", "type.object.type", "people.person"),
    ("m.05", "type.object.name", "Charles Babbage"),
    ("m.05", "type.object.type", "people.person"),
    ("m.02", "type.object.name", "London"),
    ("m.02", "type.object.type", "location.citytown"),
    ("m.02", "type.object.type", "location.location"),
    ("m.03", "type.object.name", "Paris"),
    ("m.04", "type.object.name", "Paris"),  # a shared name keeps both ids
    ("m.03", "type.object.type", "location.location"),
    ("m.09", "type.object.type", "location.location"),
    ("m.01", "people.person.place_of_birth", "m.02"),
    ("m.05", "people.person.place_of_birth", "m.02"),
    ("m.02", "location.location.people_born_here", "m.01"),
    ("m.02", "location.location.people_born_here", "m.05"),
    ("m.01", "people.person.date_of_birth", "1815-12-10"),
    ("m.05", "people.person.date_of_birth", "1791-12-26"),
    ("m.02", "location.statistical_region.population", "8900000"),
    ("m.02", "common.topic.alias", "Londinium"),
    ("m.03", "location.location.containedby", "m.09"),
    ("m.04", "location.location.containedby", "m.09"),
    ("m.07", "type.object.name", "1984"),
    ("film.director.film", "type.property.expected_type", "film.film"),
    ("m.08", "film.director.film", "1984"),  # numeric-looking, but declared an entity type
]


def test_freebase_style_triples_load_with_names_types_and_attributes():
    graph = KnowledgeGraph.from_triples(FREEBASE_ROWS)
    assert graph.edges["Ada Lovelace"] == {"people.person.place_of_birth": {"London"}}
    assert graph.neighbors(["London"], "location.location.people_born_here") == {
        "Ada Lovelace",
        "Charles Babbage",
    }
    assert graph.relations_of(["London"]) == ["location.location.people_born_here"]
    assert graph.attributes_of(["London"]) == ["location.statistical_region.population"]
    assert graph.extreme(
        ["Ada Lovelace", "Charles Babbage"], "people.person.date_of_birth", False
    ) == {"Charles Babbage"}
    assert graph.range_of("people.person.place_of_birth") == "location.citytown"  # most specific
    assert graph.range_of("location.location.people_born_here") == "people.person"
    assert graph.range_of("location.location.containedby") == "location.location"
    assert graph.range_of("film.director.film") == "film.film"
    assert graph.neighbors(["m.08"], "film.director.film") == {"1984"}
    assert {"m.03", "m.04"} <= set(graph.edges)
    assert parse_number("1815-12-10") < parse_number("1816") < parse_number("1816-02")
    assert parse_number("n/a") is None and parse_number("inf") is None


def _generic_rows(rng: random.Random) -> list[tuple[str, str, str]]:
    towns = [f"Town {c}" for c in "ABCDE"]
    firms = [f"Firm {c}" for c in "PQRST"]
    rows = []
    for i in range(40):
        person = f"Person {i}"
        town, firm = rng.choice(towns), rng.choice(firms)
        rows += [
            (person, "test.person.hometown", town),
            (town, "test.town.residents", person),
            (person, "test.person.employer", firm),
            (firm, "test.firm.staff", person),
            (person, "test.person.age", str(20 + i)),
        ]
    for firm in firms:
        town = rng.choice(towns)
        rows += [(firm, "test.firm.city", town), (town, "test.town.firms", firm)]
        rows.append((firm, "test.firm.revenue", str(rng.randint(1, 10_000))))
    return rows


def test_tasks_from_a_schemaless_triples_file(tmp_path):
    path = tmp_path / "generic.tsv"
    rows = _generic_rows(random.Random(0))
    path.write_text("# head\trelation\ttail\n" + "".join("\t".join(r) + "\n" for r in rows))
    env = KGEnv(KGConfig(n_train=12, n_test=4, seed=1, triples_path=str(path)))
    assert env.graph.range_of("test.town.residents") == "test.person"  # from the tails' edges
    tasks = env.tasks("train") + env.tasks("test")
    assert len({t.payload["qtype"] for t in tasks}) >= 4
    assert any("hometown" in t.payload["question"] for t in tasks)
    for task in tasks:
        result, _ = _play(env, task, env.expert_actions(task))
        assert result.status == Status.COMPLETED and result.reward == 1.0, task.payload
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\n")
    with pytest.raises(ValueError, match="bad.tsv:1"):
        KnowledgeGraph.from_tsv(bad)
