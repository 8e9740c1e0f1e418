"""The collect stage: env families x a policy -> trajectory shards, many episodes in flight
over EnvPool and PolicyActor actors, each task id written exactly once.

``run_collect(CollectConfig(...), run_dir)`` or ``agentray collect CONFIG``; the engine
(``RolloutEngine``) also runs eval's episodes.
"""

from agentray.collect.config import CollectConfig, RolloutConfig, check_family_names
from agentray.registry import lazy_exports

__all__ = [
    "CollectConfig",
    "CorruptShardError",
    "RolloutConfig",
    "check_family_names",
    "RolloutEngine",
    "ParquetSink",
    "PolicyCannotPlay",
    "WatchedSink",
    "check_expert_plays",
    "preflight_policy",
    "load_tasks",
    "read_trajectories",
    "run_collect",
    "summarize",
]

__getattr__ = lazy_exports(
    {
        "RolloutEngine": "agentray.collect.engine:RolloutEngine",
        "load_tasks": "agentray.collect.engine:load_tasks",
        "summarize": "agentray.collect.engine:summarize",
        "ParquetSink": "agentray.collect.sink:ParquetSink",
        "CorruptShardError": "agentray.records:CorruptShardError",
        "read_trajectories": "agentray.collect.sink:read_trajectories",
        "PolicyCannotPlay": "agentray.collect.checks:PolicyCannotPlay",
        "WatchedSink": "agentray.collect.checks:WatchedSink",
        "check_expert_plays": "agentray.collect.checks:check_expert_plays",
        "preflight_policy": "agentray.collect.checks:preflight_policy",
        "run_collect": "agentray.collect.run:run_collect",
    }
)
