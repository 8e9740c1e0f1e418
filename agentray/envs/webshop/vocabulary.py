"""Product types, attributes, options and filler text of the generated catalogue."""

from __future__ import annotations

from dataclasses import dataclass


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


FLUFF = {
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


REVIEWS = (
    ("Great value", 5, "Exactly as described and arrived quickly."),
    ("Love it", 5, "I use it every day and would buy it again."),
    ("Pretty good", 4, "Works well, just a little smaller than I expected."),
    ("Okay", 3, "It does the job but nothing special."),
    ("Not for me", 2, "The quality was not what I hoped for."),
    ("Disappointed", 1, "It stopped working after a week."),
)


# brand names: two or three syllables, capitalised
SYLLABLES = _words("ka lo mi ra ve ti no sa zu be la qu dor fen wix ar el on is ta")
