"""Seeded task generation over the templates."""

from __future__ import annotations

import random
from functools import lru_cache, partial
from typing import Any

from agentray.envs.generate import Redraw, generate_split_tasks
from agentray.envs.mind2web.config import Mind2WebConfig
from agentray.envs.mind2web.pages import Template, finalize_step
from agentray.envs.mind2web.prompt import problem_text
from agentray.envs.mind2web.templates_shopping import _jobs, _movies, _restaurant, _shopping
from agentray.envs.mind2web.templates_travel import _car_rental, _flights, _hotel
from agentray.types import TaskSpec

TEMPLATES: tuple[Template, ...] = (
    _flights,
    _shopping,
    _restaurant,
    _car_rental,
    _hotel,
    _movies,
    _jobs,
)


def make_payload(
    rng: random.Random, n_candidates: int = 5, min_steps: int = 3, max_steps: int = 8
) -> dict[str, Any]:
    template, goal, steps = rng.choice(TEMPLATES)(rng)
    if not min_steps <= len(steps) <= max_steps:
        raise Redraw
    return {
        "template": template,
        "goal": goal,
        "steps": [finalize_step(rng, s, n_candidates) for s in steps],
    }


@lru_cache(maxsize=16)
def all_tasks(config_json: str) -> dict[str, list[TaskSpec]]:
    config = Mind2WebConfig.model_validate_json(config_json)
    settings = config.model_dump(include={"n_candidates", "min_steps", "max_steps"})
    return generate_split_tasks("mind2web", config, partial(make_payload, **settings), problem_text)
