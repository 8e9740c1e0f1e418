"""A treasure hunt in a few rooms, as an agentray env family (entry point ``treasure``)."""

from agentray_treasure.env import TreasureConfig, TreasureEnv

__all__ = ["TreasureConfig", "TreasureEnv"]
