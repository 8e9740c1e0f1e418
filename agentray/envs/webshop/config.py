"""The WebShop family's settings and page constants."""

from __future__ import annotations

from pydantic import Field

from agentray.envs.base import FamilyConfig

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
