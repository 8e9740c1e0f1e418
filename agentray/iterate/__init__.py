"""Self-improvement rounds with lineage (``agentray iterate``, ``agentray lineage``).

Round 0 is the pipeline (the teacher's trajectories); round k >= 1: the model of round k-1
explores the train tasks, its successes join the earlier rounds' data, and a model is
trained and evaluated on it. Every stage writes a manifest naming its parents.
"""

from agentray.iterate.lineage import lineage_lines
from agentray.iterate.report import write_rounds_report
from agentray.iterate.run import run_iterate

__all__ = ["lineage_lines", "run_iterate", "write_rounds_report"]
