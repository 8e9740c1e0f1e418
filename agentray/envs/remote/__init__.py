"""Remote env families (episodes on servers, driven over HTTP) and ``agentray env serve``
(agentray's families served to others). See ``agentray.envs.remote.base``."""

from agentray.envs.remote.agentbench import AgentBenchConfig, AgentBenchEnv
from agentray.envs.remote.agentgym import AgentGymConfig, AgentGymEnv
from agentray.envs.remote.base import RemoteConfig, RemoteEnv

__all__ = [
    "AgentBenchConfig",
    "AgentBenchEnv",
    "AgentGymConfig",
    "AgentGymEnv",
    "RemoteConfig",
    "RemoteEnv",
]
