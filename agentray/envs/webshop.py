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
user turn is AgentBench's ``Observation:\\n{page}\\n\\nAvailable Actions:\\n{actions}``.

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

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

from pydantic import Field

from agentray.envs.base import (
    Env,
    FamilyConfig,
    Redraw,
    generate_split_tasks,
    no_episode_result,
    split_tasks,
)
from agentray.types import Message, Status, StepResult, TaskSpec

# AgentBench's WebShop prompt (src/server/tasks/webshop/__init__.py, v0.2), verbatim.
INSTRUCTION = """
You are web shopping.
I will give you instructions about what to do.
You have to follow the instructions.
Every round I will give you an observation and a list of available actions, \
you have to respond an action based on the state and instruction.
You can use search action if search is available.
You can click one of the buttons in clickables.
An action should be of the following structure:
search[keywords]
click[value]
If the action is not valid, perform nothing.
Keywords in search are up to you, but the value in click must be a value in the list of available actions.
Remember that your keywords in search should be carefully designed.
Your response should use the following format:

Thought:
I think ...

Action:
click[something]
"""

_DEMO_INSTRUCTION = (
    "i need a long lasting 6.76 fl oz bottle of l'eau d'issey, and price lower than 100.00 dollars"
)
_DEMO_ITEM = (
    f'Observation:\n"Instruction: [SEP] {_DEMO_INSTRUCTION} [SEP] Back to Search [SEP] < Prev '
    "[SEP] size [SEP] 2.5 fl oz [SEP] 6.76 fl oz (pack of 1) [SEP] L'eau D'issey By Issey "
    "Miyake for MenEau De Toilette Spray, 6.7 Fl Oz Bottle [SEP] Price: $64.98 [SEP] Rating: "
    'N.A. [SEP] Description [SEP] Features [SEP] Reviews [SEP] Buy Now"\n\nAvailable Actions:\n'
    '{"has_search_bar": false, "clickables": ["...", "...", "...", "...", "...", "...", "...", '
    '"..."]}'
)
# AgentBench's one-shot (same file), verbatim: its turns after the opening "Ok.".
ONE_SHOT: list[Message] = [
    {
        "role": "user",
        "content": f'Observation:\n"WebShop [SEP] Instruction: [SEP] {_DEMO_INSTRUCTION} [SEP] '
        'Search"\n\nAvailable Actions:\n{"has_search_bar": true, "clickables": ["..."]}',
    },
    {
        "role": "assistant",
        "content": "Thought:\nI think I should use the search bar to look for the product I "
        "need.\n\nAction:\nsearch[l'eau d'issey 6.76 fl oz bottle price < 100.00]",
        "loss": False,
    },
    {
        "role": "user",
        "content": f'Observation:\n"Instruction: [SEP] {_DEMO_INSTRUCTION} [SEP] Back to Search '
        "[SEP] Page 1 (Total results: 50) [SEP] Next > [SEP] B000VOHH8I [SEP] L'eau D'issey By "
        "Issey Miyake for MenEau De Toilette Spray, 6.7 Fl Oz Bottle [SEP] $64.98 [SEP] "
        "B000MJZOPK [SEP] L'eau d'Issey by Issey Miyake for Women 3.3 oz Eau de Toilette Spray "
        "[SEP] $49.98 [SEP] B0012S249E [SEP] L'eau D'issey By Issey Miyake For Women. Shower "
        "Cream 6.7-Ounces [SEP] $31.36 [SEP] B01H8PGKZS [SEP] L'eau D'Issey FOR MEN by Issey "
        "Miyake - 6.7 oz EDT Spray [SEP] $67.97 [SEP] B00G3C8FHE [SEP] L'Eau d'Issey pour Homme "
        "- Eau de Toilette 4.2 fl oz [SEP] $51.25 [SEP] B000R94HRG [SEP] Issey Miyake L'Eau "
        "D'Issey Pour Homme Eau De Toilette Natural Spray [SEP] $44.99 [SEP] B000C214CO [SEP] "
        "Issey Miyake L'eau D'issey Eau de Toilette Spray for Men, 4.2 Fl Oz [SEP] $53.99 [SEP] "
        "B0018SBRDC [SEP] Issey Miyake L'eau d'Issey for Women EDT, White, 0.84 Fl Oz [SEP] "
        "$27.04 [SEP] B000XEAZ9Y [SEP] L'eau De Issey By Issey Miyake For Men. Eau De Toilette "
        "Spray 6.7 Fl Oz [SEP] $67.08 [SEP] B079HZR2RX [SEP] L'eau d'Issey Pure by Issey Miyake "
        'for Women 3.0 oz Nectar de Parfum Spray [SEP] $71.49"\n\nAvailable Actions:\n'
        '{"has_search_bar": false, "clickables": ["...", "...", "...", "...", "...", "...", '
        '"...", "...", "...", "...", "...", "..."]}',
    },
    {
        "role": "assistant",
        "content": "Thought:\nI think I should click on the product I need, which is "
        "B000VOHH8I.\n\nAction:\nclick[B000VOHH8I]",
        "loss": False,
    },
    {"role": "user", "content": _DEMO_ITEM},
    {
        "role": "assistant",
        "content": "Thought:\nI think I should click on the '6.76 fl oz (pack of 1)' option to "
        "select the size I need.\n\nAction:\nclick[6.76 fl oz (pack of 1)]",
        "loss": False,
    },
    {"role": "user", "content": _DEMO_ITEM},
    {
        "role": "assistant",
        "content": "Thought:\nI think I should click on the 'Buy Now' button to purchase the "
        "product.\n\nAction:\nclick[Buy Now]",
        "loss": False,
    },
]

# WebShop's engine constants.
SEARCH_RETURN_N = 50
PRODUCT_WINDOW = 10
END_BUTTON = "Buy Now"
NEXT_PAGE = "Next >"
PREV_PAGE = "< Prev"
BACK_TO_SEARCH = "Back to Search"
SUB_PAGES = ("Description", "Features", "Reviews")
PRICE_RANGE = [10.0 * i for i in range(1, 100)]


class WebShopConfig(FamilyConfig):
    max_rounds: int = Field(10, description="agent turns per episode (AgentBench: 10)")
    n_products: int = Field(
        1000, ge=100, le=20000, description="catalogue size (WebShop's small setting: 1,000)"
    )
    max_goal_attributes: int = Field(3, ge=1, le=4, description="attributes a goal names")
    max_goal_options: int = Field(2, ge=0, le=3, description="options a goal names")


# --------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True)
class ProductType:
    name: str  # the search query the products were "scraped" with; the title's type words
    nouns: tuple[str, ...]  # the nouns of ``name`` (for r_type's title score)
    category: str
    path: str  # WebShop's product_category, segments joined by " › "
    descriptors: tuple[str, ...]
    attributes: tuple[str, ...]
    options: tuple[tuple[str, tuple[str, ...]], ...]
    price: tuple[float, float]
    article: str = ""  # "some" / "a pair of"; empty: a / an by the next word
    display: str = ""  # the title's spelling of ``name`` (default: title case)


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _pt(name, nouns, category, path, descriptors, attributes, options, price, **kw):
    return ProductType(
        name, tuple(nouns.split()), category, path, tuple(descriptors.split(", ")),
        tuple(attributes.split(", ")),
        tuple((k, tuple(v.split(", "))) for k, v in options.items()), price, **kw,
    )  # fmt: skip


_BEAUTY, _FOOD, _FASHION = "beauty", "grocery", "fashion"
_HOME, _TECH = "furniture", "electronics"
_B, _G = "Beauty & Personal Care › ", "Grocery & Gourmet Food › "
_F, _H, _E = "Clothing, Shoes & Jewelry › ", "Home & Kitchen › ", "Electronics › "
_COLORS = "black, white, navy, grey, olive, red, beige, pink"

PRODUCT_TYPES: tuple[ProductType, ...] = (
    _pt("face moisturizer", "face moisturizer", _BEAUTY,
        _B + "Skin Care › Face › Creams & Moisturizers",
        "Hydrating, Daily, Lightweight, Nourishing, Overnight",
        "fragrance free, cruelty free, paraben free, hyaluronic acid, sensitive skin, "
        "dermatologist tested, oil free, natural ingredients",
        {"size": "1.7 fl oz, 3.4 fl oz, 5 fl oz, 0.25 fl oz travel size"}, (9, 60)),
    _pt("shampoo", "shampoo", _BEAUTY, _B + "Hair Care › Shampoo & Conditioner › Shampoos",
        "Volumizing, Clarifying, Moisture Repair, Daily, Smoothing",
        "sulfate free, paraben free, dry hair, color treated, cruelty free, natural "
        "ingredients, hair growth",
        {"size": "12 fl oz, 16.9 fl oz, 33.8 fl oz",
         "scent": "coconut, lavender, tea tree, argan oil, eucalyptus mint"}, (6, 40)),
    _pt("lipstick", "lipstick", _BEAUTY, _B + "Makeup › Lips › Lipstick",
        "Creamy, Velvet, Satin, Bold, Classic",
        "long lasting, cruelty free, matte finish, vegan formula, highly pigmented, easy to "
        "apply", {"color": "ruby red, nude, berry, coral, mauve, plum, wine"}, (5, 30)),
    _pt("nail polish", "nail polish", _BEAUTY,
        _B + "Foot, Hand & Nail Care › Nail Art & Polish › Nail Polish",
        "Glossy, Quick Dry, Salon, Chip Resistant, Shimmer",
        "quick drying, non toxic, long lasting, gel finish, cruelty free, high shine",
        {"color": "cherry red, baby pink, midnight blue, mint green, pure white, jet black"},
        (4, 20)),
    _pt("eau de parfum", "eau parfum", _BEAUTY, _B + "Fragrance › Women's › Eau de Parfum",
        "Floral, Fresh, Warm, Citrus, Signature", "long lasting, travel size, floral scent, "
        "gift set, alcohol free", {"size": "1.7 fl oz, 3.4 fl oz, 5 fl oz"}, (25, 140),
        display="Eau de Parfum"),
    _pt("body wash", "body wash", _BEAUTY, _B + "Skin Care › Body › Cleansers › Body Washes",
        "Gentle, Refreshing, Creamy, Foaming, Soothing",
        "sensitive skin, sulfate free, natural ingredients, dry skin, paraben free, shea "
        "butter", {"scent": "lavender, coconut, oatmeal, cucumber melon, sandalwood",
                   "size": "16 fl oz, 32 fl oz"}, (5, 30)),
    _pt("protein bars", "protein bars", _FOOD, _G + "Snacks & Sweets › Bars › Protein Bars",
        "Chewy, Crunchy, Baked, Layered, Soft Baked",
        "gluten free, high protein, low sugar, keto friendly, non gmo, plant based, "
        "individually wrapped", {"flavor name": "chocolate chip, peanut butter, cookie dough, "
                                 "salted caramel, birthday cake", "size": "12 count, 30 count"},
        (15, 60), article="some"),
    _pt("whole bean coffee", "bean coffee", _FOOD,
        _G + "Beverages › Coffee, Tea & Cocoa › Coffee › Whole Coffee Beans",
        "Dark Roast, Medium Roast, Single Origin, Smooth, Bold",
        "organic, fair trade, low acid, kosher, non gmo, small batch",
        {"flavor name": "french roast, breakfast blend, colombian, hazelnut, vanilla",
         "size": "12 ounce, 2 pound, 5 pound bag"}, (9, 70), article="some"),
    _pt("green tea", "tea", _FOOD, _G + "Beverages › Coffee, Tea & Cocoa › Tea › Green",
        "Premium, Loose Leaf, Classic, Organic Blend, Japanese",
        "organic, non gmo, caffeine free, individually wrapped, sugar free, kosher",
        {"flavor name": "jasmine, matcha, lemon ginger, peach, pure green",
         "size": "20 count, 100 count"}, (4, 30), article="some"),
    _pt("trail mix", "trail mix", _FOOD, _G + "Snacks & Sweets › Nuts & Seeds › Trail Mix",
        "Classic, Sweet, Energy, Mountain, Deluxe",
        "gluten free, non gmo, resealable bag, low sodium, no artificial flavors, "
        "individually wrapped", {"flavor name": "sweet and salty, dark chocolate, tropical, "
                                 "nut lovers", "size": "26 ounce, 1.5 ounce (pack of 12)"},
        (6, 35), article="some"),
    _pt("extra virgin olive oil", "olive oil", _FOOD,
        _G + "Pantry Staples › Cooking Oils › Olive", "Cold Pressed, Premium, Mediterranean, "
        "Estate, First Harvest", "organic, non gmo, kosher, cold pressed, glass bottle, "
        "single origin", {"size": "16.9 fl oz, 25.4 fl oz, 68 fl oz"}, (8, 45), article="some",
        display="Extra Virgin Olive Oil"),
    _pt("gummy candy", "candy", _FOOD, _G + "Snacks & Sweets › Candy & Chocolate › Gummy Candy",
        "Sour, Chewy, Fruity, Assorted, Party",
        "gluten free, fat free, vegan, individually wrapped, natural flavors, kosher",
        {"flavor name": "sour, tropical fruit, strawberry, watermelon, cherry",
         "size": "2 pound, 12 ounce bag"}, (5, 30), article="some"),
    _pt("t-shirt", "t-shirt", _FASHION, _F + "Men › Clothing › Shirts › T-Shirts",
        "Classic, Essential, Athletic, Vintage, Everyday",
        "machine washable, short sleeve, classic fit, cotton jersey, moisture wicking, "
        "relaxed fit, tagless", {"color": _COLORS, "size": "small, medium, large, x-large"},
        (8, 35), display="T-Shirt"),
    _pt("hoodie", "hoodie", _FASHION, _F + "Men › Clothing › Active › Active Hoodies",
        "Pullover, Zip Up, Fleece, Heavyweight, Lightweight",
        "fleece lined, machine washable, long sleeve, kangaroo pocket, drawstring hood, "
        "cotton blend", {"color": _COLORS, "size": "small, medium, large, x-large"}, (18, 60)),
    _pt("running shoes", "shoes", _FASHION, _F + "Men › Shoes › Athletic › Running › Road Running",
        "Cushioned, Trail, Road, Lightweight, Performance",
        "non slip, rubber sole, lightweight, breathable mesh, arch support, memory foam",
        {"color": "black, white, grey, blue, red", "size": "7, 8, 9, 10, 11, 12"}, (30, 130),
        article="a pair of"),
    _pt("dress", "dress", _FASHION, _F + "Women › Clothing › Dresses › Casual",
        "Summer, Maxi, Casual, Wrap, Midi",
        "v neck, short sleeve, elastic waist, machine wash, polyester spandex, flowy, pockets",
        {"color": "black, floral, navy, burgundy, yellow, green", "size": "small, medium, "
         "large"}, (15, 60)),
    _pt("jeans", "jeans", _FASHION, _F + "Women › Clothing › Jeans",
        "Skinny, Straight Leg, Bootcut, Mom, High Rise",
        "slim fit, high waist, stretch denim, button closure, machine wash, butt lifting",
        {"color": "indigo, black, grey, white", "size": "26, 28, 30, 32, 34"}, (20, 70),
        article="a pair of"),
    _pt("necklace", "necklace", _FASHION, _F + "Women › Jewelry › Necklaces › Pendants",
        "Dainty, Layered, Heart, Minimalist, Charm",
        "sterling silver, hypoallergenic, gift box, adjustable chain, nickel free, 18k gold "
        "plated", {"color": "gold, silver, black"}, (10, 60)),
    _pt("office chair", "office chair", _HOME,
        _H + "Furniture › Home Office Furniture › Home Office Chairs",
        "Ergonomic, Executive, Task, Mid Back, Gaming",
        "lumbar support, easy assembly, adjustable height, mesh back, swivel wheels, high "
        "back, padded armrests", {"color": "black, grey, white, blue"}, (60, 250)),
    _pt("bookshelf", "bookshelf", _HOME, _H + "Furniture › Living Room Furniture › Bookcases",
        "Industrial, Modern, Ladder, Corner, Open", "easy assembly, engineered wood, space "
        "saving, storage space, anti tip, metal frame",
        {"color": "walnut, white, black, oak", "size": "3 tier, 5 tier"}, (40, 180)),
    _pt("coffee table", "coffee table", _HOME, _H + "Furniture › Living Room Furniture › Tables "
        "› Coffee Tables", "Rustic, Modern, Lift Top, Round, Farmhouse",
        "storage shelf, easy assembly, living room, solid wood, mid century, metal legs",
        {"color": "rustic brown, black, white, natural"}, (50, 220)),
    _pt("bed frame", "bed frame", _HOME, _H + "Furniture › Bedroom Furniture › Beds, Frames "
        "& Bases › Bed Frames", "Metal Platform, Upholstered, Wooden, Low Profile, Heavy Duty",
        "no box spring needed, easy assembly, under bed storage, noise free, headboard "
        "included, wood slats", {"size": "twin, full, queen, king"}, (80, 350)),
    _pt("throw pillow covers", "pillow covers", _HOME, _H + "Home Décor Products › Decorative "
        "Pillows, Inserts & Covers › Throw Pillow Covers",
        "Velvet, Boho, Linen, Farmhouse, Modern", "machine washable, hidden zipper, living "
        "room, double sided, soft velvet", {"color": "navy, mustard, blush, sage, cream",
                                            "size": "18 x 18 inch, 20 x 20 inch, 16 x 24 inch"},
        (8, 35), article="some"),
    _pt("area rug", "area rug", _HOME, _H + "Home Décor Products › Area Rugs, Runners & Pads "
        "› Area Rugs", "Shag, Vintage, Geometric, Moroccan, Washable",
        "non slip, machine washable, low pile, stain resistant, living room, pet friendly",
        {"color": "grey, blue, ivory, terracotta", "size": "2 x 3 ft, 5 x 7 ft, 8 x 10 ft"},
        (30, 200)),
    _pt("wireless earbuds", "earbuds", _TECH, _E + "Headphones, Earbuds & Accessories › "
        "Headphones & Earbuds › Earbud Headphones", "True Wireless, Sport, Bluetooth, Pro, Mini",
        "noise cancelling, water resistant, long battery life, fast charging, hands free, "
        "touch control", {"color": "black, white, blue, pink"}, (20, 150), article="a pair of"),
    _pt("bluetooth speaker", "speaker", _TECH, _E + "Portable Audio & Video › Portable "
        "Speakers & Docks › Portable Bluetooth Speakers", "Portable, Outdoor, Mini, Party, Rugged",
        "waterproof, long battery life, stereo sound, built in microphone, dustproof",
        {"color": "black, blue, red, green"}, (20, 120), display="Bluetooth Speaker"),
    _pt("hdmi cable", "cable", _TECH, _E + "Accessories & Supplies › Audio & Video Accessories "
        "› Cables › HDMI Cables", "High Speed, Braided, Ultra, Premium, Flat",
        "high speed, gold plated, 4k ultra hd, braided cord, ethernet support",
        {"size": "3 feet, 6 feet, 10 feet, 15 feet"}, (5, 30), display="HDMI Cable"),
    _pt("power bank", "power bank", _TECH, _E + "Computers & Accessories › Portable Power "
        "Banks", "Slim, Compact, Magnetic, Solar, Rugged",
        "fast charging, usb c, led display, high capacity, wireless charging",
        {"color": "black, white, blue", "style": "5000mah, 20000mah, 26800mah"}, (15, 70)),
    _pt("wireless mouse", "mouse", _TECH, _E + "Computers & Accessories › Computer Accessories "
        "& Peripherals › Keyboards, Mice & Accessories › Mice",
        "Ergonomic, Silent, Slim, Vertical, Travel",
        "silent click, usb receiver, long battery life, adjustable dpi, ergonomic design",
        {"color": "black, grey, pink, white"}, (8, 50)),
    _pt("phone case", "phone case", _TECH, _E + "Cell Phones & Accessories › Cases, Holsters "
        "& Sleeves › Basic Cases", "Slim, Rugged, Clear, Leather, Glitter",
        "shockproof, wireless charging compatible, slim fit, raised edges, drop protection",
        {"color": "clear, black, purple, green", "style": "phone 13, phone 14 pro"}, (6, 35)),
)  # fmt: skip

_FLUFF = {
    _BEAUTY: (
        "gentle enough for everyday use",
        "a salon quality result at home",
        "made without harsh chemicals",
        "a fresh and clean feeling all day",
        "a travel friendly bottle",
        "loved by thousands of customers",
    ),
    _FOOD: (
        "a delicious snack for the whole family",
        "carefully sourced ingredients",
        "perfect for the office or on the go",
        "packed fresh for great taste",
        "a great gift for food lovers",
        "rich flavor in every bite",
    ),
    _FASHION: (
        "comfortable for all day wear",
        "a flattering fit for every occasion",
        "durable stitching that lasts",
        "easy to pair with your favorite outfits",
        "a perfect gift for friends and family",
        "soft fabric that feels great on the skin",
    ),
    _HOME: (
        "a stylish look for any room",
        "sturdy construction for years of use",
        "simple instructions and all hardware included",
        "a space you will love coming home to",
        "designed to fit small apartments",
        "easy to clean with a damp cloth",
    ),
    _TECH: (
        "plug and play with no drivers needed",
        "compatible with most popular devices",
        "backed by a worry free warranty",
        "a compact design that fits in your bag",
        "reliable performance for work and play",
        "premium materials built to last",
    ),
}
_REVIEWS = (
    ("Great value", 5, "Exactly as described and arrived quickly."),
    ("Love it", 5, "I use it every day and would buy it again."),
    ("Pretty good", 4, "Works well, just a little smaller than I expected."),
    ("Okay", 3, "It does the job but nothing special."),
    ("Not for me", 2, "The quality was not what I hoped for."),
    ("Disappointed", 1, "It stopped working after a week."),
)
# brand names: two or three syllables, capitalised
_SYLLABLES = _words("ka lo mi ra ve ti no sa zu be la qu dor fen wix ar el on is ta")


# --------------------------------------------------------------------------- text matching

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


# --------------------------------------------------------------------------- reward


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


# --------------------------------------------------------------------------- catalogue

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
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


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
    fluff = _FLUFF[ptype.category]
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
        for t, s, b in rng.sample(_REVIEWS, rng.choice((0, 0, 1, 2, 3)))
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


# --------------------------------------------------------------------------- goals


_OPENERS = (
    "i need",
    "i am looking for",
    "i'm looking for",
    "i want",
    "find me",
    "i would like",
    "show me",
    "i'd like to buy",
)
_OPTION_PHRASES = {
    "size": ("in {v} size", "in size {v}", "in the {v} size"),
    "color": ("in {v} color", "in {v}", "in the color {v}"),
    "flavor name": ("in {v} flavor", "with {v} flavor"),
    "scent": ("with {v} scent", "in {v} scent"),
    "style": ("in {v} style", "in the {v} style"),
}


def _option_groups(product: dict[str, Any]) -> dict[str, str]:
    return {v: name for name, values in product["options"].items() for v in values}


def distinct_options(product: dict[str, Any]) -> dict[str, list[str]]:
    """Per option group, the values the reward can tell apart from every other value.

    A goal only names such values, so buying the product with another option scores less.
    """
    values = list(_option_groups(product))
    out: dict[str, list[str]] = {}
    for name, group in product["options"].items():
        out[name] = [
            v
            for v in group
            if all(
                token_set_ratio(normalize_color(u), normalize_color(v)) <= 85
                for u in values
                if u != v
            )
        ]
    return out


def _article(ptype_article: str, next_word: str) -> str:
    if ptype_article in ("some", "a pair of"):
        return ptype_article
    return "an" if next_word[0] in "aeiou" else "a"


def make_goal(
    rng: random.Random, cat: Catalogue, max_attributes: int, max_options: int
) -> dict[str, Any]:
    """A WebShop human goal (``get_human_goals``) for one product of the catalogue."""
    product = rng.choice(cat.products)
    ptype = next(t for t in PRODUCT_TYPES if t.name == product["query"])
    n_attr = rng.randint(1, min(max_attributes, len(product["Attributes"])))
    attributes = rng.sample(product["Attributes"], n_attr)
    eligible = {k: v for k, v in distinct_options(product).items() if v}
    n_opt = min(len(eligible), max_options, rng.choice((0, 1, 1, 2, 2, 3)))
    groups = rng.sample(sorted(eligible), n_opt)
    goal_options = [rng.choice(eligible[g]) for g in groups]

    words = ", ".join(attributes)
    if len(attributes) > 1 and rng.random() < 0.6:
        words = ", ".join(attributes[:-1]) + " and " + attributes[-1]
    text = f"{rng.choice(_OPENERS)} {_article(ptype.article, words)} {words} {ptype.name}"
    for group, value in zip(groups, goal_options, strict=True):
        phrases = _OPTION_PHRASES.get(group, ("with {g} {v}",))
        text += " " + rng.choice(phrases).format(v=value, g=group)
    price_range = [p for p in PRICE_RANGE if p > product["price"]][:4]
    if len(price_range) < 2:
        raise Redraw
    _, price_upper = sorted(rng.sample(price_range, 2))
    return {
        "asin": product["asin"],
        "category": product["category"],
        "query": product["query"],
        "name": product["Title"],
        "name_nouns": product["title_nouns"],
        "product_category": product["product_category"],
        "instruction_text": text.strip(".") + f", and price lower than {price_upper:.2f} dollars",
        "attributes": attributes,
        "price_upper": price_upper,
        "goal_options": goal_options,
    }


# --------------------------------------------------------------------------- pages


def observation_text(page: str, clickables: list[str], has_search_bar: bool) -> str:
    """AgentBench's user turn for one page."""
    available = {"has_search_bar": has_search_bar, "clickables": clickables}
    return f"Observation:\n{page}\n\nAvailable Actions:\n{available}"


def problem_text(payload: dict[str, Any]) -> str:
    """The first observation: the search page with the instruction."""
    page = " [SEP] ".join(["WebShop", "Instruction:", payload["instruction_text"], "Search"])
    return observation_text(page, ["search"], True)


@dataclass
class Session:
    """One episode's browser state (WebShop's SimServer session + SimBrowser page)."""

    goal: dict[str, Any]
    page: str = "search"  # search | results | item | sub | done
    keywords: str = ""
    hits: list[str] = field(default_factory=list)
    page_num: int = 1
    asin: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    sub_page: str = ""


def render(session: Session, cat: Catalogue) -> tuple[str, dict[str, tuple[str, str]]]:
    """The page's [SEP] text and its clickables: key -> (kind, detail), in page order."""
    head = ["Instruction:", session.goal["instruction_text"]]
    back = {"back to search": ("button", BACK_TO_SEARCH)}
    if session.page == "search":
        text = " [SEP] ".join(["WebShop", *head, "Search"])
        return text, {"search": ("button", "Search")}
    if session.page == "results":
        total = len(session.hits)
        parts = [*head, BACK_TO_SEARCH, f"Page {session.page_num} (Total results: {total})"]
        clickables = dict(back)
        if session.page_num > 1:
            parts.append(PREV_PAGE)
            clickables["< prev"] = ("button", PREV_PAGE)
        if session.page_num * PRODUCT_WINDOW < total:
            parts.append(NEXT_PAGE)
            clickables["next >"] = ("button", NEXT_PAGE)
        start = (session.page_num - 1) * PRODUCT_WINDOW
        for asin in session.hits[start : start + PRODUCT_WINDOW]:
            product = cat.by_asin[asin]
            parts += [asin, product["Title"], product["Price"]]
            clickables[asin.lower()] = ("product", asin)
        return " [SEP] ".join(parts), clickables
    product = cat.by_asin[session.asin]
    parts = [*head, BACK_TO_SEARCH, PREV_PAGE]
    clickables = {**back, "< prev": ("button", PREV_PAGE)}
    if session.page == "sub":
        parts += _sub_page_text(product, session.sub_page)
        return " [SEP] ".join(parts), clickables
    buttons = [*SUB_PAGES, END_BUTTON]
    clickables.update({b.lower(): ("button", b) for b in buttons})
    for name, values in product["options"].items():
        parts += [name, *values]
        clickables.update({v: ("option", name) for v in values})
    parts += [product["Title"], f"Price: {product['Price']}", f"Rating: {product['Rating']}"]
    return " [SEP] ".join(parts + buttons), clickables


def _sub_page_text(product: dict[str, Any], sub_page: str) -> list[str]:
    if sub_page == "Description":
        return [product["Description"]]
    if sub_page == "Features":
        return list(product["BulletPoints"]) or ["No Features"]
    if not product["Reviews"]:
        return ["No reviews found"]
    return [
        part for r in product["Reviews"] for part in (f'"{r["title"]}"', str(r["score"]), r["body"])
    ]


# --------------------------------------------------------------------------- parsing


def parse_action(text: str) -> tuple[str, str] | None:
    """AgentBench's extraction then WebShop's ``parse_action``: (name, argument) or None."""
    found = re.search(r"[Aa]ction: *\n* *((search|click)\[.+?])", text)
    if found is None:
        return None
    name, arg = re.match(r"(.+)\[(.+)\]", found.group(1)).groups()
    return name, arg


# --------------------------------------------------------------------------- expert


def expert_query(goal: dict[str, Any]) -> str:
    """The instruction's key words: attributes, product type, options."""
    return " ".join([*goal["attributes"], goal["query"], *goal["goal_options"]])


def satisfies(product: dict[str, Any], goal: dict[str, Any]) -> bool:
    """Buying ``product`` with the goal's options (all on offer) earns reward 1."""
    groups = _option_groups(product)
    if any(v not in groups for v in goal["goal_options"]):
        return False
    options = {groups[v]: v for v in goal["goal_options"]}
    return get_reward(product, goal, product["price"], options)[0] == 1.0


def expert_choice(cat: Catalogue, goal: dict[str, Any]) -> tuple[str, list[str], int] | None:
    """(query, its results, index of the first result that satisfies the goal) or None.

    The goal's own product always satisfies it; an earlier result that does too is bought
    instead, as a shopper would.
    """
    query = expert_query(goal)
    hits = cat.search(query)
    if goal["asin"] not in hits:
        return None
    rank = next(i for i, asin in enumerate(hits) if satisfies(cat.by_asin[asin], goal))
    return query, hits, rank


def expert_plan(cat: Catalogue, goal: dict[str, Any]) -> list[str] | None:
    """Search the goal's words, page to the product, open it, pick the options, buy."""
    choice = expert_choice(cat, goal)
    if choice is None:
        return None
    query, hits, rank = choice
    product = cat.by_asin[hits[rank]]
    actions = [
        "Thought:\nI think I should use the search bar to look for the product I need."
        f"\n\nAction:\nsearch[{query}]"
    ]
    actions += [
        "Thought:\nI think none of the products on this page is the one I need, so I should go "
        f"to the next page of results.\n\nAction:\nclick[{NEXT_PAGE}]"
    ] * (rank // PRODUCT_WINDOW)
    actions.append(
        f"Thought:\nI think {product['asin']} is the {goal['query']} I need, and its price "
        f"{product['Price']} is lower than {goal['price_upper']:.2f} dollars. I should click on "
        f"it.\n\nAction:\nclick[{product['asin']}]"
    )
    groups = _option_groups(product)
    actions += [
        f"Thought:\nI think I should click on the '{v}' option to select the {groups[v]} I "
        f"need.\n\nAction:\nclick[{v}]"
        for v in goal["goal_options"]
    ]
    actions.append(
        "Thought:\nI think I should click on the 'Buy Now' button to purchase the product."
        f"\n\nAction:\nclick[{END_BUTTON}]"
    )
    return actions


# --------------------------------------------------------------------------- tasks


@lru_cache(maxsize=16)
def _all_tasks(config_json: str) -> dict[str, list[TaskSpec]]:
    config = WebShopConfig.model_validate_json(config_json)
    cat = catalogue(config.seed, config.n_products)

    def make_payload(rng: random.Random) -> dict[str, Any]:
        goal = make_goal(rng, cat, config.max_goal_attributes, config.max_goal_options)
        if expert_choice(cat, goal) is None:  # the target is not found by its own words
            raise Redraw
        return goal

    return generate_split_tasks(WebShopEnv.name, config, make_payload, problem_text)


# --------------------------------------------------------------------------- the env


class WebShopEnv(Env):
    name: ClassVar[str] = "webshop"
    version: ClassVar[str] = "1"
    config_cls: ClassVar[type[FamilyConfig]] = WebShopConfig

    config: WebShopConfig

    def __init__(self, config: WebShopConfig | None = None) -> None:
        super().__init__(config)
        self._session: Session | None = None
        self._rounds = 0
        self._done = True

    @property
    def catalogue(self) -> Catalogue:
        return catalogue(self.config.seed, self.config.n_products)

    def tasks(self, split: str) -> list[TaskSpec]:
        return split_tasks(_all_tasks(self.config.model_dump_json()), split)

    def prompt(self, task: TaskSpec) -> list[Message]:
        return [
            {"role": "user", "content": INSTRUCTION},
            {"role": "assistant", "content": "Ok.", "loss": False},
            *(dict(m) for m in ONE_SHOT),  # type: ignore[misc]
            {"role": "user", "content": problem_text(task.payload)},
        ]

    def reset(self, task: TaskSpec) -> list[Message]:
        self._session = Session(goal=task.payload)
        self._rounds = 0
        self._done = False
        return self.prompt(task)

    @staticmethod
    def action_problem(reply: str) -> str | None:
        return "no `Action: search[...]` or `click[...]`" if parse_action(reply) is None else None

    def step(self, action: str) -> StepResult:
        if self._done or self._session is None:
            return no_episode_result()
        self._rounds += 1
        parsed = parse_action(action)
        if parsed is None:
            return self._finish(
                Status.AGENT_INVALID_ACTION, 0.0, None, {"error": "no valid action"}
            )
        name, arg = parsed[0], parsed[1].lower()
        _, clickables = render(self._session, self.catalogue)
        performed = True
        if name == "search" and arg:
            self._search(arg)
        elif name == "click" and arg in clickables and arg != "search":
            if arg == END_BUTTON.lower():
                return self._buy()
            self._click(arg, clickables[arg])
        else:  # AgentBench: "If the action is not valid, perform nothing."
            performed = False
        observation = self._observation()
        if self._rounds >= self.config.max_rounds:
            return self._finish(Status.TASK_LIMIT_REACHED, 0.0, observation, {})
        return StepResult(observation=observation, done=False, info={"performed": performed})

    def _observation(self) -> str:
        page, clickables = render(self._session, self.catalogue)
        return observation_text(page, list(clickables), self._session.page == "search")

    def _search(self, keywords: str, page_num: int = 1) -> None:
        s = self._session
        s.keywords, s.page, s.page_num = keywords, "results", page_num
        s.hits = self.catalogue.search(keywords)
        s.asin, s.options = None, {}

    def _click(self, key: str, clickable: tuple[str, str]) -> None:
        s = self._session
        kind, detail = clickable
        if key == BACK_TO_SEARCH.lower():
            self._session = Session(goal=s.goal)
        elif key == NEXT_PAGE.lower() and s.page == "results":
            self._search(s.keywords, s.page_num + 1)
        elif key == PREV_PAGE.lower() and s.page == "results":
            self._search(s.keywords, s.page_num - 1)
        elif key == PREV_PAGE.lower() and s.page == "sub":
            s.page = "item"
        elif key == PREV_PAGE.lower() and s.page == "item":
            self._search(s.keywords, s.page_num)
        elif kind == "button" and detail in SUB_PAGES:
            s.page, s.sub_page = "sub", detail
        elif kind == "product":
            s.page, s.asin = "item", detail
        elif kind == "option":
            s.options[detail] = key

    def _buy(self) -> StepResult:
        s = self._session
        product = self.catalogue.by_asin[s.asin]
        reward, info = get_reward(product, s.goal, product["price"], s.options)
        s.page = "done"
        page = f"Thank you for shopping with us! [SEP] Your score (min 0.0, max 1.0) [SEP] {reward}"
        info = {"asin": s.asin, "options": dict(s.options), "reward_info": info}
        return self._finish(Status.COMPLETED, reward, page, info)

    def close(self) -> None:
        self._session = None
        self._done = True

    def expert_actions(self, task: TaskSpec) -> list[str]:
        plan = expert_plan(self.catalogue, task.payload)
        if plan is None:  # generation redraws such goals; a hand-made task may still be one
            raise ValueError(f"the expert's search misses {task.payload['asin']} ({task.id})")
        return plan
