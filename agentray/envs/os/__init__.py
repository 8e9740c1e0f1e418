"""The OS family in AgentBench's OS-interaction format, each episode in a bubblewrap sandbox.

The agent answers ``Think: ...`` then one of ``Act: bash`` (+ a ```bash block, run in the
sandbox), ``Act: answer(...)`` (compared with the expected answer) or ``Act: finish`` (the
task's check script, run in the same sandbox, decides). Tasks are generated from a seed: the
files each one needs are materialised in a per-episode scratch directory at reset, which the
sandbox binds as ``/root``, its home and working directory.
"""

from agentray.envs.os.config import OSConfig
from agentray.envs.os.env import OSEnv

__all__ = ["OSConfig", "OSEnv"]
