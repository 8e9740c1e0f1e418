"""A treasure hunt in a few rooms, as an agentray env family (entry point ``treasure``)."""

from agentray_treasure.env import TreasureConfig, TreasureEnv
from agentray_treasure.policy import GuideOptions, WanderingGuide

__all__ = ["GuideOptions", "TreasureConfig", "TreasureEnv", "WanderingGuide"]
