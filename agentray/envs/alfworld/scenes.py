"""The room catalogue: scenes, receptacles, objects, goals."""

from __future__ import annotations

from dataclasses import dataclass

OPENABLE = frozenset({"cabinet", "drawer", "fridge", "microwave", "safe"})


LAMPS = ("desklamp", "floorlamp")


LAMP_PLACES = ("sidetable", "desk", "dresser")


APPLIANCE_VERB = {"sinkbasin": "clean", "microwave": "heat", "fridge": "cool"}


PROCESS = {  # task type -> (verb, appliance kind, adjective)
    "pick_clean_then_place": ("clean", "sinkbasin", "clean"),
    "pick_heat_then_place": ("heat", "microwave", "hot"),
    "pick_cool_then_place": ("cool", "fridge", "cool"),
}


@dataclass(frozen=True)
class Scene:
    receptacles: dict[str, tuple[int, int]]  # kind -> (fewest, most)
    objects: dict[str, tuple[str, ...]]  # object kind -> receptacle kinds, likeliest first
    lamps: bool = False


def _places(spec: str) -> dict[str, tuple[str, ...]]:
    """``"apple: countertop fridge; egg: fridge"`` -> {"apple": ("countertop", "fridge"), ...}."""
    out = {}
    for item in spec.split(";"):
        kind, places = item.split(":")
        out[kind.strip()] = tuple(places.split())
    return out


SCENES: dict[str, Scene] = {
    "kitchen": Scene(
        {
            "cabinet": (2, 6),
            "coffeemachine": (1, 1),
            "countertop": (1, 3),
            "diningtable": (0, 1),
            "drawer": (1, 4),
            "fridge": (1, 1),
            "garbagecan": (1, 1),
            "microwave": (1, 1),
            "shelf": (0, 2),
            "sinkbasin": (1, 1),
            "stoveburner": (2, 4),
            "toaster": (1, 1),
        },
        _places(
            "apple: countertop diningtable fridge sinkbasin garbagecan;"
            "bowl: cabinet diningtable countertop fridge shelf sinkbasin;"
            "bread: countertop diningtable fridge cabinet;"
            "butterknife: drawer countertop diningtable sinkbasin;"
            "cup: cabinet countertop diningtable fridge shelf sinkbasin;"
            "dishsponge: sinkbasin countertop cabinet drawer;"
            "egg: fridge countertop diningtable sinkbasin garbagecan;"
            "fork: drawer countertop diningtable sinkbasin;"
            "kettle: stoveburner countertop cabinet;"
            "knife: countertop diningtable drawer;"
            "ladle: drawer countertop diningtable sinkbasin;"
            "lettuce: fridge countertop diningtable garbagecan;"
            "mug: coffeemachine cabinet countertop diningtable shelf sinkbasin fridge;"
            "pan: stoveburner cabinet countertop diningtable;"
            "peppershaker: countertop diningtable cabinet shelf drawer;"
            "plate: cabinet countertop diningtable shelf fridge;"
            "pot: stoveburner cabinet countertop diningtable fridge;"
            "potato: fridge countertop diningtable sinkbasin garbagecan;"
            "saltshaker: countertop diningtable cabinet shelf drawer;"
            "soapbottle: countertop cabinet shelf;"
            "spatula: drawer countertop diningtable sinkbasin;"
            "spoon: drawer countertop diningtable sinkbasin;"
            "tomato: fridge countertop diningtable sinkbasin garbagecan;"
            "winebottle: countertop diningtable cabinet fridge shelf"
        ),
    ),
    "livingroom": Scene(
        {
            "armchair": (0, 1),
            "cabinet": (0, 2),
            "coffeetable": (1, 1),
            "diningtable": (0, 1),
            "drawer": (0, 3),
            "dresser": (0, 1),
            "garbagecan": (1, 1),
            "shelf": (0, 3),
            "sidetable": (1, 2),
            "sofa": (1, 1),
            "tvstand": (0, 1),
        },
        _places(
            "box: coffeetable sofa armchair diningtable sidetable dresser shelf;"
            "cellphone: coffeetable sofa sidetable armchair diningtable dresser drawer;"
            "creditcard: coffeetable sidetable sofa armchair diningtable dresser drawer shelf;"
            "keychain: coffeetable sidetable sofa armchair diningtable dresser drawer shelf;"
            "laptop: sofa coffeetable armchair diningtable;"
            "newspaper: coffeetable sofa armchair sidetable diningtable dresser shelf;"
            "pillow: sofa armchair;"
            "remotecontrol: coffeetable sofa armchair sidetable tvstand diningtable dresser;"
            "statue: coffeetable sidetable shelf dresser diningtable tvstand;"
            "vase: shelf coffeetable sidetable diningtable tvstand cabinet;"
            "watch: coffeetable sidetable dresser shelf drawer"
        ),
        lamps=True,
    ),
    "bedroom": Scene(
        {
            "bed": (1, 1),
            "desk": (0, 1),
            "drawer": (2, 5),
            "dresser": (0, 1),
            "garbagecan": (1, 1),
            "laundryhamper": (0, 1),
            "safe": (0, 1),
            "shelf": (0, 4),
            "sidetable": (1, 2),
        },
        _places(
            "alarmclock: desk sidetable dresser shelf;"
            "book: bed desk sidetable dresser shelf drawer;"
            "bowl: desk dresser shelf sidetable;"
            "cd: desk drawer sidetable dresser shelf safe garbagecan;"
            "cellphone: bed desk sidetable dresser drawer shelf;"
            "cloth: laundryhamper dresser drawer;"
            "creditcard: desk sidetable dresser drawer shelf;"
            "keychain: sidetable dresser desk drawer shelf safe;"
            "laptop: bed desk dresser sidetable;"
            "mug: desk sidetable dresser shelf;"
            "pen: desk sidetable drawer dresser shelf;"
            "pencil: desk sidetable drawer dresser shelf;"
            "pillow: bed"
        ),
        lamps=True,
    ),
    "bathroom": Scene(
        {
            "bathtubbasin": (0, 1),
            "cabinet": (1, 4),
            "countertop": (1, 1),
            "garbagecan": (1, 1),
            "handtowelholder": (0, 2),
            "shelf": (0, 3),
            "sinkbasin": (1, 2),
            "toilet": (1, 1),
            "toiletpaperhanger": (1, 1),
            "towelholder": (1, 1),
        },
        _places(
            "candle: countertop toilet cabinet shelf bathtubbasin;"
            "cloth: cabinet countertop bathtubbasin sinkbasin shelf;"
            "dishsponge: countertop cabinet toilet sinkbasin;"
            "handtowel: handtowelholder;"
            "soapbar: toilet countertop bathtubbasin sinkbasin cabinet garbagecan;"
            "soapbottle: countertop toilet cabinet shelf garbagecan;"
            "spraybottle: toilet countertop cabinet shelf garbagecan;"
            "tissuebox: toilet countertop shelf cabinet;"
            "toiletpaper: toiletpaperhanger toilet countertop cabinet shelf garbagecan;"
            "towel: towelholder"
        ),
    ),
}


_ANY = None  # every object of the scene qualifies


def _kinds(text: str) -> frozenset[str]:
    return frozenset(text.split())


TASK_SPACE: dict[str, tuple[tuple[str, ...], frozenset[str] | None]] = {
    "pick_and_place": (("kitchen", "livingroom", "bedroom", "bathroom"), _ANY),
    "pick_clean_then_place": (
        ("kitchen", "bathroom"),
        _kinds(
            "apple bowl butterknife cloth cup dishsponge egg fork kettle knife ladle lettuce mug "
            "pan plate pot potato soapbar spatula spoon tomato"
        ),
    ),
    "pick_heat_then_place": (
        ("kitchen",),
        _kinds("apple bread cup egg mug plate potato tomato"),
    ),
    "pick_cool_then_place": (
        ("kitchen",),
        _kinds("apple bowl bread cup egg lettuce mug pan plate pot potato tomato winebottle"),
    ),
    "look_at_obj_in_light": (("livingroom", "bedroom"), _ANY),
    "pick_two_obj_and_place": (("kitchen", "livingroom", "bedroom", "bathroom"), _ANY),
}


GOALS: dict[str, tuple[str, str]] = {  # ALFWorld's two phrasings per task type
    "pick_and_place": ("put a {o} in {r}.", "put some {o} on {r}."),
    "pick_clean_then_place": ("put a clean {o} in {r}.", "clean some {o} and put it in {r}."),
    "pick_heat_then_place": ("put a hot {o} in {r}.", "heat some {o} and put it in {r}."),
    "pick_cool_then_place": ("put a cool {o} in {r}.", "cool some {o} and put it in {r}."),
    "look_at_obj_in_light": ("look at {o} under the {lamp}.", "examine the {o} with the {lamp}."),
    "pick_two_obj_and_place": ("put two {o} in {r}.", "find two {o} and put them in {r}."),
}


# AgentBench picks the demonstration by the game's task type.
DEMO_KEYS = {
    "pick_and_place": "put",
    "pick_clean_then_place": "clean",
    "pick_heat_then_place": "heat",
    "pick_cool_then_place": "cool",
    "look_at_obj_in_light": "examine",
    "pick_two_obj_and_place": "puttwo",
}


def kind_of(name: str) -> str:
    """``"apple 1"`` -> ``"apple"``."""
    return name.rsplit(" ", 1)[0]


def _number(name: str) -> int:
    return int(name.rsplit(" ", 1)[1])


def display_key(name: str) -> tuple[str, int]:
    # ALFWorld lists things by kind, higher numbers first ("a soapbar 4, and a soapbar 3")
    return kind_of(name), -_number(name)


def listing(names: list[str]) -> str:
    """TextWorld's list: ``nothing``, ``a x``, ``a x, and a y``, ``a x, a y, and a z``."""
    items = [f"a {name}" for name in sorted(names, key=display_key)]
    if not items:
        return "nothing"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + ", and " + items[-1]
