"""Connecting to Ray the same way from the CLI, jobs and tests."""

from __future__ import annotations

import gc
import os

from agentray.registry import PLUGINS_ENV, plugin_module_paths
from agentray.storage import storage_env

# Set for the driver and passed to every worker: offline hub, quiet tokenizers.
WORKER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1",
}


def setup_process_env() -> None:
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def worker_env() -> dict[str, str]:
    """What every Ray worker gets from the driver: ``WORKER_ENV``, the object-store
    variables (``AWS_*``...), so a task on any node reaches the run's bucket, and the
    plug-ins registered in the driver (``AGENTRAY_PLUGINS``)."""
    plugins = {PLUGINS_ENV: os.environ[PLUGINS_ENV]} if os.environ.get(PLUGINS_ENV) else {}
    return {**{k: os.environ[k] for k in WORKER_ENV}, **storage_env(), **plugins}


def plugin_runtime_env() -> dict | None:
    """The runtime_env an actor needs for the plug-in names registered in this process
    (None: none are): Ray may have started before a config registered them, so actors that
    build families or policies by name get the names with their own options. (Their modules
    travel only with the job, ``worker_runtime_env``: Ray uploads local folders only there.)"""
    if not os.environ.get(PLUGINS_ENV):
        return None
    return {"env_vars": {PLUGINS_ENV: os.environ[PLUGINS_ENV]}}


def worker_runtime_env() -> dict:
    """The runtime_env of the driver's job: ``worker_env()`` and, as ``py_modules``, the
    plug-in modules no installed package holds (they travel to every node)."""
    runtime_env: dict = {"env_vars": worker_env()}
    if modules := plugin_module_paths():
        runtime_env["py_modules"] = modules
    return runtime_env


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """``ray.init`` once: joins ``address`` (or RAY_ADDRESS, e.g. inside ``ray job submit``),
    else starts a local cluster."""
    import ray

    setup_process_env()
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs = {"address": address} if address else {"num_cpus": num_cpus}
    ray.init(
        **kwargs,
        runtime_env=worker_runtime_env(),
        log_to_driver=True,
        # Ray Train's placement-group cleaner polls the State API, which the dashboard
        # serves; without it every training run logs a warning each second.
        include_dashboard=None if address else True,
    )


YOUNG_GC_THRESHOLD = 50_000  # container allocations between young collections (CPython: 700)


def relax_gc() -> None:
    """Fewer cyclic-GC passes, for a long-lived actor on the rollout's hot path (an EnvPool,
    a PolicyActor). Such an actor holds thousands of conversations and allocates many
    short-lived objects per turn; at CPython's defaults the collections that follow took
    about a sixth of a PolicyActor's CPU against a remote teacher (1,024 episodes in
    flight). What is alive once the actor has started is frozen (never scanned again), and
    a young collection waits for ``YOUNG_GC_THRESHOLD`` allocations. Reference counting
    still frees non-cyclic garbage at once; only cycles wait longer."""
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_GC_THRESHOLD), middle, old)
