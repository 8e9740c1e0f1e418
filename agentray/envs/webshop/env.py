"""The WebShop env: one shopping session per episode."""

from __future__ import annotations

from agentray.envs.base import Env, action_or_invalid
from agentray.envs.generate import split_tasks
from agentray.envs.webshop.catalogue import Catalogue, catalogue
from agentray.envs.webshop.config import (
    BACK_TO_SEARCH,
    END_BUTTON,
    NEXT_PAGE,
    PREV_PAGE,
    SUB_PAGES,
    WebShopConfig,
)
from agentray.envs.webshop.expert import expert_plan
from agentray.envs.webshop.pages import (
    Session,
    observation_text,
    parse_action,
    problem_text,
    render,
)
from agentray.envs.webshop.prompt import INSTRUCTION, ONE_SHOT
from agentray.envs.webshop.score import get_reward
from agentray.envs.webshop.tasks import all_tasks
from agentray.types import Message, Status, StepResult, TaskSpec


class WebShopEnv(Env[WebShopConfig]):
    name = "webshop"
    metric_label = "reward (x100)"

    _session: Session | None = None

    @property
    def catalogue(self) -> Catalogue:
        return catalogue(self.config.seed, self.config.n_products)

    def tasks(self, split: str) -> list[TaskSpec]:
        return split_tasks(all_tasks(self.config.model_dump_json()), split)

    def prompt(self, task: TaskSpec) -> list[Message]:
        return [
            {"role": "user", "content": INSTRUCTION},
            {"role": "assistant", "content": "Ok.", "loss": False},
            *(dict(m) for m in ONE_SHOT),  # type: ignore[misc]
            {"role": "user", "content": problem_text(task.payload)},
        ]

    def start(self, task: TaskSpec) -> None:
        self._session = Session(goal=task.payload)

    @staticmethod
    def action_problem(reply: str) -> str | None:
        return "no `Action: search[...]` or `click[...]`" if parse_action(reply) is None else None

    def parse(self, reply: str) -> tuple[str, str]:
        return action_or_invalid(parse_action(reply), "no valid action")

    def act(self, action: tuple[str, str]) -> StepResult:
        name, arg = action[0], action[1].lower()
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
        return StepResult(
            observation=self._observation(), done=False, info={"performed": performed}
        )

    def limit(self, result: StepResult) -> StepResult:
        return self._finish(Status.TASK_LIMIT_REACHED, 0.0, result.observation, {})

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

    def stop(self) -> None:
        self._session = None

    def expert_actions(self, task: TaskSpec) -> list[str]:
        plan = expert_plan(self.catalogue, task.payload)
        if plan is None:  # generation redraws such goals; a hand-made task may still be one
            raise ValueError(f"the expert's search misses {task.payload['asin']} ({task.id})")
        return plan
