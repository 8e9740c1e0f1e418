"""The knowledge-graph family in AgentBench's KnowledgeGraph format, over a local graph.

The graph is either generated from the config seed (countries, cities, people, universities,
companies, films, sports teams; Freebase-style dotted relation names such as
``people.person.place_of_birth``, each with its named reverse such as
``location.location.people_born_here``, and numeric attributes such as
``location.statistical_region.population``) or loaded from a TSV file of triples
(``triples_path``: ``head \t relation \t tail``; see ``KnowledgeGraph.from_triples`` for the
schema predicates it understands). Either way it is built once per process and shared by
every episode; task payloads carry only the question, its entities, the gold answer set and
the expert's actions.

The agent has AgentBench's seven tools, called one per turn on an ``Action: ...`` line:
``get_relations``, ``get_neighbors``, ``intersection``, ``get_attributes``, ``argmax``,
``argmin``, ``count``. Results that are sets become variables ``#0, #1, ...``; the episode
ends with ``Final Answer: #k`` and is scored, as AgentBench does, by the F1 of the answer set
against the gold set (exact match is reported in ``info``).

As in AgentBench, a reply that calls no tool, calls one that fails, or names a variable that
does not exist gets an error observation and the episode goes on (that step's status is
``AGENT_INVALID_ACTION`` with ``done=False``, counted in ``info["invalid_actions"]``); the
episode ends with ``COMPLETED`` at a final answer (reward = F1) or ``TASK_LIMIT_REACHED`` after
``max_rounds`` replies. AgentBench also cuts each reply at ``Observation:`` before keeping it
in the history; this env parses only that part but cannot rewrite the caller's history.
"""

from agentray.envs.kg.config import KGConfig
from agentray.envs.kg.env import KGEnv

__all__ = ["KGConfig", "KGEnv"]
