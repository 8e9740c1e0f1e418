"""The WebShop family in AgentBench's WebShop format, over a generated catalogue.

A catalogue of products (five WebShop categories, thirty product types; titles, descriptions,
features, attributes such as "gluten free", buying options such as size and colour, prices,
reviews) is generated from the config seed, once per process, together with a BM25 index
(``bm25s``; WebShop's pyserini defaults k1=0.9, b=0.4; Lucene's English stop words and
minimal plural stemmer) over the text WebShop indexes: title, description, first feature and
the options. Each task is a WebShop "human goal" drawn from one target product: a lowercase
instruction naming some of its attributes and options and a price bound, built as
``get_human_goals`` does (the bound is the larger of two of the four multiples of ten above
the price).

The pages are WebShop's text observations (``WebAgentTextEnv`` in ``text`` mode: visible
strings joined by ``[SEP]``): search page, results (10 a page out of the top 50,
``Next >`` / ``< Prev``), item page (options, ``Description``, ``Features``, ``Reviews``,
``Buy Now``, ``< Prev`` back to the results), sub-pages (``< Prev`` back to the item). Each
user turn is AgentBench's ``Observation:\n{page}\n\nAvailable Actions:\n{actions}``.

Actions and statuses follow AgentBench's WebShop task (v0.2): the reply must contain
``Action:`` then ``search[...]`` or ``click[...]``; a reply without one ends the episode
(AGENT_INVALID_ACTION, reward 0). A well-formed action the page cannot take (a click on
something not in the clickables, ``click[search]``) "performs nothing": the same page comes
back and the episode goes on. As in WebShop's text env, ``search[...]`` works from any page.
``click[Buy Now]`` ends the episode (COMPLETED) with WebShop's reward; AgentBench gives an
episode 10 rounds, after which it is TASK_LIMIT_REACHED with reward 0.

The reward is ``get_reward`` of WebShop's ``engine/goal.py``: r_type * (attribute matches +
option matches + price ok) / (goal attributes + goal options + 1), with thefuzz's
``token_set_ratio > 85`` (re-implemented here, same processing and rounding) for attributes
and options and ``normalize_color`` on options. One simplification: r_type's title score uses
the nouns of the two titles, which WebShop takes from spaCy's POS tagger; here the generator
records each title's nouns (the brand and the product type's nouns) as it writes it.
"""

from agentray.envs.webshop.config import WebShopConfig
from agentray.envs.webshop.env import WebShopEnv

__all__ = ["WebShopConfig", "WebShopEnv"]
