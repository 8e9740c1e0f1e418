"""WebShop's text matching and reward (type, attributes, options, price)."""

from __future__ import annotations

from typing import Any

from agentray.envs.webshop.vocabulary import _words

# thefuzz's fuzz.token_set_ratio with its defaults (full_process, force_ascii), rounded as it
# rounds, and WebShop's normalize_color (engine/normalize.py).
COLOR_SET = _words(
    "alabaster apricot aqua ash asphalt azure banana beige black blue blush bordeaux bronze "
    "brown burgundy camel camo caramel champagne charcoal cheetah chestnut chocolate christmas "
    "coffee cognac copper coral cranberry cream crystal dark denim eggplant elephant espresso "
    "fuchsia gold granite grape graphite grass gray green grey heather indigo ivory ivy khaki "
    "lavender lemon leopard light lilac lime magenta maroon mauve merlot midnight mint mocha "
    "multicolor mushroom mustard natural navy nude olive orange peach pewter pink plum purple "
    "rainbow red rose royal rust sand sapphire seashell silver skull slate steel stone "
    "stonewash sunflower tan taupe teal tiger turquoise violet walnut wheat white wine "
    "yellow"
)


def normalize_color(text: str) -> str:
    """WebShop's ``normalize_color``: the first colour of COLOR_SET found in the text, if any."""
    for color in COLOR_SET:
        if color in text:
            return color
    return text


_LATIN1 = {i: None for i in range(128, 256)}  # thefuzz's force_ascii drops these only


def _full_process(text: str) -> str:
    text = text.translate(_LATIN1)
    return "".join(c if c.isalnum() else " " for c in text).lower().strip()


def _indel_distance(a: str, b: str) -> int:
    """Insertions + deletions turning a into b: len(a) + len(b) - 2 * LCS(a, b)."""
    previous = [0] * (len(b) + 1)
    for ca in a:
        current = [0]
        for j, cb in enumerate(b):
            current.append(previous[j] + 1 if ca == cb else max(previous[j + 1], current[j]))
        previous = current
    return len(a) + len(b) - 2 * previous[-1]


def token_set_ratio(a: str, b: str) -> int:
    """``thefuzz.fuzz.token_set_ratio`` (rapidfuzz's algorithm), 0..100."""
    tokens_a, tokens_b = set(_full_process(a).split()), set(_full_process(b).split())
    if not tokens_a or not tokens_b:
        return 0
    common = tokens_a & tokens_b
    only_a, only_b = tokens_a - tokens_b, tokens_b - tokens_a
    if common and (not only_a or not only_b):
        return 100
    diff_a, diff_b = " ".join(sorted(only_a)), " ".join(sorted(only_b))
    sect = len(" ".join(sorted(common)))
    len_a = sect + (sect != 0) + len(diff_a)
    len_b = sect + (sect != 0) + len(diff_b)
    score = 100 - 100 * _indel_distance(diff_a, diff_b) / (len_a + len_b)
    if sect:
        score = max(
            score,
            100 - 100 * (1 + len(diff_a)) / (sect + len_a),
            100 - 100 * (1 + len(diff_b)) / (sect + len_b),
        )
    return int(round(score))


def get_type_reward(purchased: dict[str, Any], goal: dict[str, Any]) -> dict[str, Any]:
    """WebShop's ``get_type_reward``; title nouns come from the generator, not spaCy."""
    query_match = purchased["query"] == goal["query"]
    purchased_path = {x.strip() for x in purchased["product_category"].split("›")}
    goal_path = {x.strip() for x in goal["product_category"].split("›")}
    category_match = len(purchased_path & goal_path) >= 2
    desired = set(goal["name_nouns"])
    if not desired:
        title_score = 0.2
    else:
        title_score = len(set(purchased["title_nouns"]) & desired) / len(desired)
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return {
        "r_type": r_type,
        "query_match": query_match,
        "category_match": category_match,
        "title_score": title_score,
    }


def get_attribute_reward(purchased: dict[str, Any], goal: dict[str, Any]) -> tuple[float, int]:
    matches = 0
    text = (
        purchased["Title"].lower(),
        " ".join(purchased["BulletPoints"]).lower(),
        purchased["Description"].lower(),
    )
    for g_attr in goal["attributes"]:
        if any(token_set_ratio(p_attr, g_attr) > 85 for p_attr in purchased["Attributes"]) or any(
            g_attr in t for t in text
        ):
            matches += 1
    return matches / len(goal["attributes"]), matches


def get_option_reward(purchased_options: list[str], goal_options: list[str]):
    purchased = [normalize_color(o) for o in purchased_options]
    goal = [normalize_color(o) for o in goal_options]
    matches = sum(1 for g in goal if any(token_set_ratio(p, g) > 85 for p in purchased))
    return (matches / len(goal) if goal else None), matches


def get_reward(
    purchased: dict[str, Any], goal: dict[str, Any], price: float, options: dict[str, str]
) -> tuple[float, dict[str, Any]]:
    """WebShop's ``get_reward(..., verbose=True)``: the reward in [0, 1] and its parts."""
    type_info = get_type_reward(purchased, goal)
    r_price = price <= goal["price_upper"]
    r_att, n_attr = get_attribute_reward(purchased, goal)
    r_option, n_option = get_option_reward(list(options.values()), goal["goal_options"])
    denominator = len(goal["attributes"]) + len(goal["goal_options"]) + 1
    reward = (n_attr + n_option + r_price) / denominator * type_info["r_type"]
    info = {**type_info, "r_att": r_att, "w_att": len(goal["attributes"]) / denominator}
    if r_option is not None:
        info.update(r_option=r_option, w_option=len(goal["goal_options"]) / denominator)
    info.update(r_price=r_price, w_price=1 / denominator)
    return reward, info
