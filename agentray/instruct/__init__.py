"""AgentInstruct's instruction generation for families without a training set (AgentTuning
builds DB and OS tasks by self-instruct and task derivation with GPT-4): a teacher proposes
tasks from seed examples and each is kept only if it verifies in the real environment.

``run_instruct(InstructConfig(...), run_dir)`` or ``agentray instruct CONFIG``; the kept
tasks feed collection through the families' ``task_files``.
"""

from agentray.instruct.config import InstructConfig
from agentray.registry import lazy_exports

__all__ = ["InstructConfig", "InstructError", "run_instruct"]

__getattr__ = lazy_exports(
    {
        "run_instruct": "agentray.instruct.generate:run_instruct",
        "InstructError": "agentray.instruct.generate:InstructError",
    }
)
