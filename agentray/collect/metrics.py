"""Ray metrics of a rollout run, shown by the Ray dashboard (Prometheus names get a ``ray_``
prefix, counters also a ``_total`` suffix: ``ray_agentray_episodes_finished_total``).

- ``agentray_episodes_finished{family,status}`` (counter)
- ``agentray_episodes_in_flight`` (gauge)
- ``agentray_step_latency_s{kind}`` (histogram; kind = env_reset | env_step | policy)
- ``agentray_episode_retries{actor}`` and ``agentray_actor_replacements{actor}`` (counters;
  actor = env_pool | policy)
"""

from __future__ import annotations

LATENCY_BOUNDARIES_S = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]


class RolloutMetrics:
    """Thin wrapper over ``ray.util.metrics``; every method is a no-op when disabled."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        if not enabled:
            return
        from ray.util import metrics

        self._finished = metrics.Counter(
            "agentray_episodes_finished",
            description="episodes written, by env family and final status",
            tag_keys=("family", "status"),
        )
        self._in_flight = metrics.Gauge(
            "agentray_episodes_in_flight", description="episodes running now"
        )
        self._latency = metrics.Histogram(
            "agentray_step_latency_s",
            description="latency of one env reset/step or one policy turn, seconds",
            boundaries=LATENCY_BOUNDARIES_S,
            tag_keys=("kind",),
        )
        self._retries = metrics.Counter(
            "agentray_episode_retries",
            description="episodes restarted because an actor died",
            tag_keys=("actor",),
        )
        self._replacements = metrics.Counter(
            "agentray_actor_replacements",
            description="dead actors recreated",
            tag_keys=("actor",),
        )

    def finished(self, family: str, status: str) -> None:
        if self.enabled:
            self._finished.inc(1, tags={"family": family, "status": status})

    def in_flight(self, n: int) -> None:
        if self.enabled:
            self._in_flight.set(n)

    def latency(self, kind: str, seconds: float) -> None:
        if self.enabled:
            self._latency.observe(seconds, tags={"kind": kind})

    def retry(self, actor: str) -> None:
        if self.enabled:
            self._retries.inc(1, tags={"actor": actor})

    def replacement(self, actor: str) -> None:
        if self.enabled:
            self._replacements.inc(1, tags={"actor": actor})
