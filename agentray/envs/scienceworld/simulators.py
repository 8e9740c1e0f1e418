"""Simulators (one JVM each), lent to one env at a time."""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
from typing import Any

from agentray.envs.scienceworld.config import INSTALL_HINT


def _start_simulator(jvm_options: str) -> Any:
    try:
        from scienceworld import ScienceWorldEnv as Simulator
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from None
    with _Simulators.start_lock:  # JAVA_TOOL_OPTIONS is read when the JVM starts
        previous = os.environ.get("JAVA_TOOL_OPTIONS")
        os.environ["JAVA_TOOL_OPTIONS"] = jvm_options
        try:
            return Simulator("", envStepLimit=10**9)  # this family counts the rounds
        finally:
            if previous is None:
                os.environ.pop("JAVA_TOOL_OPTIONS", None)
            else:
                os.environ["JAVA_TOOL_OPTIONS"] = previous


class _Simulators:
    """This process's started simulators (one JVM each), lent to one env at a time."""

    start_lock = threading.Lock()

    def __init__(self) -> None:
        self._idle: dict[str, list[Any]] = {}
        self._lock = threading.Lock()
        self.started = 0

    def acquire(self, jvm_options: str) -> Any:
        with self._lock:
            idle = self._idle.get(jvm_options)
            if idle:
                return idle.pop()
        simulator = _start_simulator(jvm_options)
        simulator.agentray_jvm_options = jvm_options
        with self._lock:
            self.started += 1
        return simulator

    def release(self, simulator: Any) -> None:
        with self._lock:
            self._idle.setdefault(simulator.agentray_jvm_options, []).append(simulator)

    @staticmethod
    def discard(simulator: Any) -> None:
        with contextlib.suppress(Exception):  # a dead JVM: nothing left to close
            simulator.close()

    def close_idle(self) -> None:
        with self._lock:
            idle = [s for group in self._idle.values() for s in group]
            self._idle.clear()
        for simulator in idle:
            self.discard(simulator)


SIMULATORS = _Simulators()


atexit.register(SIMULATORS.close_idle)
