"""Connecting to Ray the same way from the CLI, jobs and tests."""

from __future__ import annotations

import os

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
    """What every Ray worker gets from the driver: ``WORKER_ENV`` and the object-store
    variables (``AWS_*``...), so a task on any node reaches the run's bucket."""
    return {**{k: os.environ[k] for k in WORKER_ENV}, **storage_env()}


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
        runtime_env={"env_vars": worker_env()},
        log_to_driver=True,
        # Ray Train's placement-group cleaner polls the State API, which the dashboard
        # serves; without it every training run logs a warning each second.
        include_dashboard=None if address else True,
    )
