"""The seeded product catalogue and its search index."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from agentray.envs.webshop.config import SEARCH_RETURN_N
from agentray.envs.webshop.vocabulary import (
    FLUFF,
    PRODUCT_TYPES,
    REVIEWS,
    SYLLABLES,
    ProductType,
    _words,
)

# Lucene's English stop words (pyserini's default analyzer removes them too).
STOPWORDS = frozenset(
    _words(
        "a an and are as at be but by for if in into is it no not of on or such that the "
        "their then there these they this to was will with"
    )
)


_TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")


def _stem(word: str) -> str:
    """Lucene's EnglishMinimalStemmer (plural "s" only)."""
    if len(word) < 3 or word[-1] != "s" or word[-2] in "us":
        return word
    if word[-2] == "e":
        if len(word) > 3 and word[-3] == "i" and word[-4] not in "ae":
            return word[:-3] + "y"
        if word[-3] in "iaoe":
            return word
    return word[:-1]


def analyze(text: str) -> list[str]:
    return [_stem(t) for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]


def index_text(product: dict[str, Any]) -> str:
    """What WebShop indexes (search_engine/convert_product_file_format.py)."""
    options = ", and ".join(
        f"{name}: {', '.join(values)}" for name, values in product["options"].items()
    )
    return " ".join(
        [product["Title"], product["Description"], product["BulletPoints"][0], options]
    ).lower()


@dataclass
class Catalogue:
    products: list[dict[str, Any]]
    by_asin: dict[str, dict[str, Any]] = field(init=False)
    _bm25: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        import bm25s  # deferred: ~0.2 s to import, needed once per process

        self.by_asin = {p["asin"]: p for p in self.products}
        self._bm25 = bm25s.BM25(k1=0.9, b=0.4)
        self._bm25.index([analyze(index_text(p)) for p in self.products], show_progress=False)

    def search(self, query: str) -> list[str]:
        """The asins of the top SEARCH_RETURN_N products with a positive BM25 score."""
        import numpy as np

        tokens = [t for t in analyze(query) if t in self._bm25.vocab_dict]
        if not tokens:
            return []
        scores = self._bm25.get_scores(tokens)
        top = np.argsort(-scores, kind="stable")[:SEARCH_RETURN_N]
        return [self.products[i]["asin"] for i in top if scores[i] > 0]


def _brand(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def _asin(rng: random.Random) -> str:
    return "B0" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(8))


def _make_product(rng: random.Random, ptype: ProductType, brand: str, asin: str) -> dict[str, Any]:
    attributes = rng.sample(ptype.attributes, rng.randint(2, min(4, len(ptype.attributes))))
    options = {}
    for name, values in ptype.options:
        chosen = set(rng.sample(values, rng.randint(2, len(values))))
        options[name] = [v for v in values if v in chosen]
    descriptor = rng.choice(ptype.descriptors)
    display = ptype.display or ptype.name.title()
    in_title = attributes[: rng.randint(0, 2)]
    title = f"{brand} {descriptor} {display}"
    if in_title:
        title += ", " + ", ".join(a.title() for a in in_title)
    fluff = FLUFF[ptype.category]
    bullets = [
        f"{a.upper()} - {rng.choice(fluff)}" for a in rng.sample(attributes, len(attributes))
    ]
    bullets.append(rng.choice(fluff).capitalize() + ".")
    described = rng.sample(attributes, rng.randint(1, len(attributes)))
    description = (
        f"The {brand} {descriptor.lower()} {ptype.name} is {' and '.join(described)}. "
        f"Enjoy {rng.choice(fluff)}, with {rng.choice(fluff)}."
    )
    reviews = [
        {"title": t, "score": s, "body": b}
        for t, s, b in rng.sample(REVIEWS, rng.choice((0, 0, 1, 2, 3)))
    ]
    price = round(rng.uniform(*ptype.price), 2)
    return {
        "asin": asin,
        "category": ptype.category,
        "query": ptype.name,
        "product_category": ptype.path,
        "Title": title,
        "title_nouns": [brand.lower(), *ptype.nouns],
        "Description": description,
        "BulletPoints": bullets,
        "Attributes": attributes,
        "options": options,
        "price": price,
        "Price": f"${price}",
        "Reviews": reviews,
        "Rating": round(sum(r["score"] for r in reviews) / len(reviews), 1) if reviews else "N.A.",
    }


@lru_cache(maxsize=4)
def catalogue(seed: int, n_products: int) -> Catalogue:
    """The seed's catalogue and its search index, built once per process."""
    rng = random.Random(f"webshop-catalogue:{seed}")
    brands: dict[str, list[str]] = {}
    for ptype in PRODUCT_TYPES:
        while len(brands.setdefault(ptype.category, [])) < 12:
            name = _brand(rng)
            if name not in brands[ptype.category]:
                brands[ptype.category].append(name)
    asins: set[str] = set()
    products = []
    for i in range(n_products):
        ptype = PRODUCT_TYPES[i % len(PRODUCT_TYPES)]
        asin = _asin(rng)
        while asin in asins:
            asin = _asin(rng)
        asins.add(asin)
        products.append(_make_product(rng, ptype, rng.choice(brands[ptype.category]), asin))
    rng.shuffle(products)
    return Catalogue(products)


def option_groups(product: dict[str, Any]) -> dict[str, str]:
    return {v: name for name, values in product["options"].items() for v in values}
