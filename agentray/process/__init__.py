"""The process stage (Ray Data): filter trajectories, AgentInstruct records, general data,
mix at eta, tokenize with loss masks, pack, data card.

``run_process(ProcessConfig(...), run_dir)`` or ``agentray process CONFIG``.
"""

from agentray.process.config import ProcessConfig
from agentray.registry import lazy_exports

__all__ = ["ProcessConfig", "ProcessError", "classify_trajectory", "run_process"]

__getattr__ = lazy_exports(
    {
        "run_process": "agentray.process.run:run_process",
        "ProcessError": "agentray.process.inputs:ProcessError",
        "classify_trajectory": "agentray.process.agentinstruct:classify_trajectory",
    }
)
