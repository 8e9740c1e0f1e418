"""agentray: AgentTuning (Zeng et al., 2023) as a scalable Ray system."""

__version__ = "0.1.0"
