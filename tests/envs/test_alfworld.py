"""The ALFWorld family: generation, the expert, AgentBench's parsing and statuses, the world."""

from __future__ import annotations

import json
import random
import re

import pytest
from pydantic import ValidationError

from agentray.envs.alfworld import AlfWorldConfig, AlfWorldEnv
from agentray.envs.alfworld.config import TASK_TYPES
from agentray.envs.alfworld.parsing import parse_action, sentence_bleu, snap_to_admissible
from agentray.envs.alfworld.prompt import INSTRUCTION, OK_REPLY
from agentray.envs.alfworld.scenes import GOALS, listing
from agentray.envs.alfworld.world import World
from agentray.envs.base import Env
from agentray.types import Status, TaskSpec

SAMPLE = AlfWorldConfig(n_train=48, n_test=24, seed=3)


def _act(command: str) -> str:
    return f"ACTION: {command}"


def _task(payload: dict) -> TaskSpec:
    return TaskSpec(id="alfworld_x", family="alfworld", split="train", seed=0, payload=payload)


HEAT = {
    "task_type": "pick_heat_then_place",
    "scene": "kitchen",
    "goal": "put a hot apple in countertop.",
    "object": "apple",
    "target": "countertop",
    "lamp": None,
    "receptacles": [
        ["cabinet 1", 7, True, False],
        ["countertop 1", 3, False, False],
        ["fridge 1", 5, True, False],
        ["microwave 1", 9, True, False],
    ],
    "objects": [["apple 1", "fridge 1"], ["egg 2", "fridge 1"], ["egg 1", "cabinet 1"]]
    + [["mug 1", "countertop 1"]],
}


def _kitchen_task(env: AlfWorldEnv) -> TaskSpec:
    return next(t for t in env.tasks("train") if t.payload["scene"] == "kitchen")


def test_expert_solves_every_sampled_task():
    env = AlfWorldEnv(SAMPLE)
    tasks = env.tasks("train") + env.tasks("test")
    assert {t.payload["task_type"] for t in tasks} == set(TASK_TYPES)
    assert {t.payload["scene"] for t in tasks} == {"kitchen", "livingroom", "bedroom", "bathroom"}
    for task in tasks:
        env.reset(task)
        plan = env.expert_actions(task)
        assert plan == env.expert_actions(task)  # depends on the task alone
        assert len(plan) <= SAMPLE.max_expert_steps
        for i, action in enumerate(plan):
            result = env.step(action)
            assert result.done == (i == len(plan) - 1), (task.id, i, action, result)
            assert "Nothing happens." not in result.observation
        assert result.status == Status.COMPLETED and result.reward == 1.0, (task.id, result)
    env.close()


def test_generation_is_deterministic_with_disjoint_unique_splits():
    a, b = AlfWorldEnv(SAMPLE), AlfWorldEnv(SAMPLE)
    train, test = a.tasks("train"), a.tasks("test")
    assert [t.model_dump() for t in train + test] == [
        t.model_dump() for t in b.tasks("train") + b.tasks("test")
    ]
    assert [t.id for t in train] == [f"alfworld_{i}" for i in range(48)]
    assert [t.id for t in test] == [f"alfworld_{i}" for i in range(48, 72)]
    assert {t.split for t in train} == {"train"} and {t.split for t in test} == {"test"}
    problems = [Env.problem_of(a.prompt(t)) for t in train + test]
    assert len(set(problems)) == len(problems)
    json.loads(json.dumps([t.payload for t in train + test]))  # payloads cross parquet / Ray
    other = AlfWorldEnv(AlfWorldConfig(n_train=48, n_test=24, seed=4)).tasks("train")
    assert [t.payload for t in other] != [t.payload for t in train]
    bigger = AlfWorldEnv(AlfWorldConfig(n_train=48, n_test=30, seed=3))
    assert [t.payload for t in bigger.tasks("train")] == [t.payload for t in train]
    assert [t.payload for t in bigger.tasks("test")[:24]] == [t.payload for t in test]


def test_config_is_typed_and_rejects_bad_fields():
    assert AlfWorldConfig().max_rounds == 35
    with pytest.raises(ValidationError, match="not_a_field"):
        AlfWorldConfig(not_a_field=1)
    with pytest.raises(ValidationError, match="pick_and_place"):  # names the allowed values
        AlfWorldConfig(task_types=["make_coffee"])
    with pytest.raises(ValidationError, match="max_expert_steps"):
        AlfWorldConfig(max_rounds=20)
    with pytest.raises(ValidationError, match="min_distractors"):
        AlfWorldConfig(min_distractors=9, max_distractors=3)
    only = AlfWorldEnv(AlfWorldConfig(n_train=5, n_test=2, task_types=["look_at_obj_in_light"]))
    assert {t.payload["task_type"] for t in only.tasks("train") + only.tasks("test")} == {
        "look_at_obj_in_light"
    }


def test_prompt_layout_with_a_demo_of_the_same_task_type():
    env = AlfWorldEnv(SAMPLE)
    for task_type in TASK_TYPES:
        task = next(t for t in env.tasks("train") if t.payload["task_type"] == task_type)
        messages = env.prompt(task)
        assert messages[0] == {"role": "user", "content": INSTRUCTION}
        assert messages[1] == {"role": "assistant", "content": OK_REPLY, "loss": False}
        assert messages[2]["content"].startswith("Here is one example.\nYou are in the middle")
        assistants = [m for m in messages if m["role"] == "assistant"]
        assert all(m["loss"] is False for m in assistants)
        assert assistants[-1]["content"] == "ACTION: Task succeeded."
        assert all("loss" not in m for m in messages if m["role"] == "user")
        demo_goal = messages[2]["content"].split("Your task is to: ")[1]
        patterns = [
            re.escape(g).replace(r"\{o\}", r"\w+").replace(r"\{r\}", r"\w+")
            for g in GOALS[task_type]
        ]
        patterns = [p.replace(r"\{lamp\}", r"\w+") for p in patterns]
        assert any(re.fullmatch(p, demo_goal) for p in patterns), (task_type, demo_goal)
        problem = messages[-1]["content"]
        assert messages[-1]["role"] == "user" and Env.problem_of(messages) == problem
        assert problem == (
            "Here is your task. You are in the middle of a room. Looking quickly around you, "
            f"you see {listing([r[0] for r in task.payload['receptacles']])}.\n"
            f"Your task is to: {task.payload['goal']}"
        )
        assert env.problem_of([*messages, {"role": "assistant", "content": "x"}]) == problem
    bare = AlfWorldEnv(AlfWorldConfig(n_train=2, n_test=1, one_shot=False))
    messages = bare.prompt(bare.tasks("train")[0])
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]


def test_replies_without_an_action_end_as_invalid_action():
    env = AlfWorldEnv(SAMPLE)
    task = env.tasks("train")[0]
    bad = ["go to cabinet 1", "THOUGHT: I should look around first.", "Action: look", "ACTION:", ""]
    for reply in [*bad, "ACTION:   \ngo to cabinet 1"]:
        env.reset(task)
        result = env.step(reply)
        assert result.done and result.status == Status.AGENT_INVALID_ACTION, reply
        assert result.reward == 0.0 and result.observation is None
        assert env.step(_act("look")).status == Status.TASK_ERROR  # the episode is over


def test_parsing_takes_the_first_action_line_lower_cased():
    assert parse_action("THOUGHT: find it.\n ACTION: Go To Cabinet 1\nmore") == "go to cabinet 1"
    assert parse_action("ACTION: inventory\nACTION: look") == "inventory"
    assert parse_action("THOUGHT: nothing to do") is None
    env = AlfWorldEnv(AlfWorldConfig(n_train=2, n_test=1, fuzzy_match=False))
    env.reset(_task(HEAT))
    result = env.step("THOUGHT: The apple may be in the fridge.\n ACTION: GO TO FRIDGE 1")
    assert result.observation == "The fridge 1 is closed." and not result.done


def test_fuzzy_matching_snaps_to_the_nearest_admissible_command():
    env = AlfWorldEnv(AlfWorldConfig(n_train=2, n_test=1))
    env.reset(_task(HEAT))
    result = env.step(_act("go to the fridge 1"))
    assert result.info["command"] == "go to fridge 1"
    assert result.observation == "The fridge 1 is closed."
    # BLEU works on words: a misspelt word ties every "go to X 1" and the first one wins
    assert env.step(_act("go to frige 1")).info["command"] == "go to cabinet 1"
    result = env.step(_act("dance wildly"))  # no word in common: passed on, nothing happens
    assert result.observation == "Nothing happens." and not result.done
    strict = AlfWorldEnv(AlfWorldConfig(n_train=2, n_test=1, fuzzy_match=False))
    strict.reset(_task(HEAT))
    result = strict.step(_act("go to frige 1"))
    assert result.observation == "Nothing happens." and result.status == Status.RUNNING


def test_bleu_is_nltk_sentence_bleu_with_method4():
    # reference values computed with nltk 3.10 sentence_bleu(..., SmoothingFunction().method4)
    cases = {
        ("go to cabinet 1", "go to cabnet 1"): 0.18616487055295167,
        ("go to cabinet 1", "go to cabinet"): 0.41252121275142684,
        ("take apple 1 from countertop 1", "take apple from countertop"): 0.14429214010467267,
        ("inventory", "inventory please"): 0.06754436142034707,
        ("put apple 1 in/on fridge 1", "put apple 1 in fridge 1"): 0.293945703509473,
        ("heat apple 1 with microwave 1", "heat the apple"): 0.03171655779267419,
        ("use desklamp 1", "use lamp"): 0.04096772609215166,
        ("go to sofa 1", "go"): 0.049787068367863944,
        ("go to fridge 1", "task succeeded."): 0.0,
    }
    for (reference, candidate), expected in cases.items():
        assert sentence_bleu(reference, candidate) == pytest.approx(expected, rel=1e-12)
    choices = ["go to drawer 1", "go to drawer 12", "look"]
    assert snap_to_admissible("go to drawer 2", choices) == "go to drawer 1"  # first best
    assert snap_to_admissible("jump", choices) == "jump"


def test_three_identical_replies_end_as_invalid_action():
    env = AlfWorldEnv(SAMPLE)
    task = env.tasks("train")[0]
    env.reset(task)
    for _ in range(3):  # AgentBench checks only once more than three turns were played
        assert not env.step(_act("look")).done
    result = env.step(_act("look"))
    assert result.done and result.status == Status.AGENT_INVALID_ACTION
    assert result.observation.startswith("You are in the middle of a room.")

    env.reset(task)
    assert not env.step(_act("inventory")).done
    assert not env.step(_act("look")).done
    assert not env.step(_act("look")).done
    assert env.step(_act("look")).status == Status.AGENT_INVALID_ACTION

    lenient = AlfWorldEnv(AlfWorldConfig(n_train=2, n_test=1, fail_on_repeat=False))
    lenient.reset(lenient.tasks("train")[0])
    assert not any(lenient.step(_act("look")).done for _ in range(6))


def test_round_limit_gives_task_limit_reached():
    env = AlfWorldEnv(SAMPLE)
    env.reset(env.tasks("train")[0])
    for i in range(34):
        assert not env.step(_act("look" if i % 2 else "inventory")).done
    result = env.step(_act("look"))
    assert result.done and result.status == Status.TASK_LIMIT_REACHED and result.reward == 0.0
    assert result.observation
    assert env.step(_act("look")).status == Status.TASK_ERROR


def test_world_phrasing_and_heat_goal():
    env = AlfWorldEnv(AlfWorldConfig(n_train=2, n_test=1, fuzzy_match=False))
    env.reset(_task(HEAT))
    script = [
        (
            "look",
            "You are in the middle of a room. Looking quickly around you, you see "
            "a cabinet 1, a countertop 1, a fridge 1, and a microwave 1.",
        ),
        ("take apple 1 from fridge 1", "Nothing happens."),
        ("go to fridge 1", "The fridge 1 is closed."),
        ("take apple 1 from fridge 1", "Nothing happens."),
        (
            "open fridge 1",
            "You open the fridge 1. The fridge 1 is open. In it, you see a apple 1, and a egg 2.",
        ),
        ("take apple 1 from fridge 1", "You pick up the apple 1 from the fridge 1."),
        ("take egg 2 from fridge 1", "Nothing happens."),  # one object at a time
        ("close fridge 1", "You close the fridge 1."),
        ("inventory", "You are carrying: a apple 1."),
        ("examine apple 1", "There's nothing special about apple 1."),
        ("look", "You are facing the fridge 1. Next to it, you see nothing."),
        ("go to countertop 1", "On the countertop 1, you see a mug 1."),
        ("put apple 1 in/on countertop 1", "You put the apple 1 in/on the countertop 1."),
        ("inventory", "You are not carrying anything."),
        ("take apple 1 from countertop 1", "You pick up the apple 1 from the countertop 1."),
        ("heat apple 1 with microwave 1", "Nothing happens."),  # not there yet
        ("go to microwave 1", "The microwave 1 is closed."),
        ("heat apple 1 with microwave 1", "You heat the apple 1 using the microwave 1."),
        ("examine apple 1", "This is a hot apple 1."),
        ("go to countertop 1", "On the countertop 1, you see a mug 1."),
    ]
    for command, expected in script:
        result = env.step(_act(command))
        assert (result.observation, result.done) == (expected, False), command
    result = env.step(_act("put apple 1 in/on countertop 1"))
    assert result.done and result.status == Status.COMPLETED and result.reward == 1.0
    world = World(HEAT)
    assert world.execute("go to cabinet 1") == "You arrive at loc 7. The cabinet 1 is closed."
    assert world.execute("open cabinet 1").endswith("In it, you see a egg 1.")


def test_look_at_in_light_and_pick_two_goals():
    look = {
        "task_type": "look_at_obj_in_light",
        "scene": "bedroom",
        "goal": "look at book under the desklamp.",
        "object": "book",
        "target": None,
        "lamp": "desklamp",
        "receptacles": [["desk 1", 2, False, False], ["drawer 1", 4, True, False]],
        "objects": [["book 1", "drawer 1"], ["desklamp 1", "desk 1"]],
    }
    env = AlfWorldEnv(AlfWorldConfig(n_train=2, n_test=1, fuzzy_match=False))
    env.reset(_task(look))
    assert env.step(_act("go to desk 1")).observation == "On the desk 1, you see a desklamp 1."
    assert env.step(_act("take desklamp 1 from desk 1")).observation == "Nothing happens."
    result = env.step(_act("use desklamp 1"))
    assert result.observation == "You turn on the desklamp 1." and not result.done
    for command in ("go to drawer 1", "open drawer 1", "take book 1 from drawer 1"):
        assert not env.step(_act(command)).done  # the lit lamp is elsewhere
    result = env.step(_act("go to desk 1"))
    assert result.done and result.reward == 1.0 and result.status == Status.COMPLETED

    two = {
        "task_type": "pick_two_obj_and_place",
        "scene": "livingroom",
        "goal": "put two cellphone in sofa.",
        "object": "cellphone",
        "target": "sofa",
        "lamp": None,
        "receptacles": [["coffeetable 1", 1, False, False], ["sofa 1", 2, False, False]],
        "objects": [["cellphone 1", "coffeetable 1"], ["cellphone 2", "coffeetable 1"]],
    }
    env.reset(_task(two))
    for command in ("go to coffeetable 1", "take cellphone 1 from coffeetable 1", "go to sofa 1"):
        assert not env.step(_act(command)).done
    assert not env.step(_act("put cellphone 1 in/on sofa 1")).done  # one is not two
    for command in ("go to coffeetable 1", "take cellphone 2 from coffeetable 1", "go to sofa 1"):
        assert not env.step(_act(command)).done
    result = env.step(_act("put cellphone 2 in/on sofa 1"))
    assert result.done and result.reward == 1.0


def test_available_actions_are_appended_when_asked():
    env = AlfWorldEnv(AlfWorldConfig(n_train=2, n_test=1, show_available_actions=True))
    messages = env.reset(_task(HEAT))
    assert messages[-1]["content"].endswith(
        " AVAILABLE ACTIONS: go to cabinet 1\ngo to countertop 1\ngo to fridge 1\n"
        "go to microwave 1\ninventory\nlook\n"
    )
    result = env.step(_act("go to fridge 1"))
    observation, actions = result.observation.split(" AVAILABLE ACTIONS: ")
    assert observation == "The fridge 1 is closed."
    assert "open fridge 1" in actions.splitlines() and "go to fridge 1" not in actions


def test_listing_follows_textworld():
    assert listing([]) == "nothing"
    assert listing(["apple 1"]) == "a apple 1"
    assert listing(["soapbar 3", "soapbar 4"]) == "a soapbar 4, and a soapbar 3"
    assert listing(["mug 1", "apple 2", "cup 1"]) == "a apple 2, a cup 1, and a mug 1"


def test_step_never_raises_and_without_reset_is_a_task_error():
    assert AlfWorldEnv(SAMPLE).step(_act("look")).status == Status.TASK_ERROR
    env = AlfWorldEnv(SAMPLE)
    task = _kitchen_task(env)
    rng = random.Random(0)
    alphabet = "abcdefghij ACTION:THOUGHT\n/().é漢\t"
    for _ in range(300):
        if rng.random() < 0.1 or env._done:
            env.reset(task)
        reply = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        if rng.random() < 0.5:
            reply = "ACTION: " + reply
        result = env.step(reply)
        assert result.status in set(Status)
