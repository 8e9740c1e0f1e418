"""Seeded tasks (a task type and a seed) with recorded demonstrations."""

from __future__ import annotations

from typing import Any

from agentray.envs.generate import built_once, task_seed, tasks_from_payloads
from agentray.envs.miniwob.actions import format_action
from agentray.envs.miniwob.browsers import BROWSERS
from agentray.envs.miniwob.config import MiniWoBConfig
from agentray.envs.miniwob.expert import EXPERT_TYPES
from agentray.envs.miniwob.pages import _elements, observation_text
from agentray.envs.miniwob.prompt import DEMO_DONE
from agentray.types import Message, TaskSpec


def problem_key(payload: dict[str, Any]) -> str:
    return observation_text(payload["utterance"], payload["elements"])


def _draw(browser: Any, subdomain: str, seed: int) -> dict[str, Any]:
    observation, _ = browser.reset(seed=seed)
    elements = _elements(observation)
    fields = {str(k): str(v) for k, v in observation["fields"]}
    plan = EXPERT_TYPES[subdomain](fields, elements)
    return {
        "subdomain": subdomain,
        "seed": seed,
        "utterance": str(observation["utterance"]),
        "elements": elements,
        "plan": [list(step) for step in plan],
    }


def _build(config: MiniWoBConfig) -> dict[str, Any]:
    types = list(dict.fromkeys(config.task_types))
    limit_ms = int(config.episode_time_limit_s * 1000)
    out: dict[str, Any] = {"train": [], "test": [], "demos": {}}
    seen: set[str] = set()
    for position, subdomain in enumerate(types):
        browser = BROWSERS.acquire(subdomain, limit_ms)
        try:
            draws = [("demos", 0)] + [
                (split, index)
                for split, n in (("train", config.n_train), ("test", config.n_test))
                for index in range(position, n, len(types))
            ]
            for split, index in draws:
                payload = _unique_draw(browser, subdomain, config.seed, split, index, seen)
                if split == "demos":
                    out["demos"][subdomain] = _record_demo(browser, payload)
                else:
                    out[split].append((index, payload))
        finally:
            BROWSERS.discard(browser)  # envs run elsewhere (EnvPool actors), mostly
    for split in ("train", "test"):
        out[split] = [payload for _, payload in sorted(out[split], key=lambda x: x[0])]
    return out


def _unique_draw(browser, subdomain, base_seed, split, index, seen) -> dict[str, Any]:
    for attempt in range(50):
        seed = task_seed(f"miniwob:{subdomain}", base_seed, split, index, attempt)
        try:
            payload = _draw(browser, subdomain, seed)
        except ValueError:  # the expert cannot read this page: draw again
            continue
        if problem_key(payload) not in seen:
            seen.add(problem_key(payload))
            return payload
    raise RuntimeError(f"could not draw a unique {subdomain} task for {split} #{index}")


def _record_demo(browser: Any, payload: dict[str, Any]) -> dict[str, Any]:
    browser.reset(seed=payload["seed"])
    observations = []
    for kind, ref, text in payload["plan"]:
        observation, reward, done = _act(browser, kind, ref, text)
        observations.append(observation)
        if done:
            break
    if not (done and reward > 0):
        raise RuntimeError(f"the {payload['subdomain']} demonstration does not succeed")
    return {**payload, "observations": observations}


def _act(browser: Any, kind: str, ref: int, text: str | None) -> tuple[str | None, float, bool]:
    if kind == "click":
        action = browser.create_action("CLICK_ELEMENT", ref=ref)
    else:
        action = browser.create_action("FOCUS_ELEMENT_AND_TYPE_TEXT", ref=ref, text=text)
    observation, reward, done, _, info = browser.step(action)
    if done:
        return None, float(info.get("raw_reward", reward)), True
    return observation_text(observation["utterance"], _elements(observation)), 0.0, False


@built_once
def _built(config_json: str) -> dict[str, Any]:
    return _build(MiniWoBConfig.model_validate_json(config_json))


def tasks_by_split(built: dict[str, Any]) -> dict[str, list[TaskSpec]]:
    return tasks_from_payloads("miniwob", built["train"], built["test"], "seed")


def demonstration(demo: dict[str, Any]) -> list[Message]:
    turns: list[Message] = [
        {"role": "user", "content": "Here is one example.\n" + problem_key(demo)}
    ]
    for (kind, ref, text), observation in zip(demo["plan"], demo["observations"], strict=False):
        turns.append(
            {"role": "assistant", "content": format_action(kind, ref, text), "loss": False}
        )
        turns.append({"role": "user", "content": observation or DEMO_DONE})
    turns.append({"role": "assistant", "content": "OK.", "loss": False})
    return turns
