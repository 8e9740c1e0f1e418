"""HTTP for remote env families: one pooled session per thread, least-loaded choice among a
family's server URLs, and errors that say which URL failed and how.

A server that refuses, resets or does not answer in time raises ``EnvServerLost`` (the
engine restarts the episode) and is avoided for ``down_s`` seconds by this process's
later episodes; an answer with an error status raises ``RemoteEnvError`` (the episode's own
task_error, not retried).
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from agentray.envs.base import EnvServerLost

_local = threading.local()
_balancers: dict[tuple[str, ...], Balancer] = {}
_balancers_lock = threading.Lock()


class RemoteEnvError(RuntimeError):
    """A remote env server answered with an error status (the URL, status and body)."""

    def __init__(self, url: str, status: int, body: str) -> None:
        super().__init__(f"{url} answered {status}: {body[:300]}")
        self.status = status
        self.body = body


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=16, pool_maxsize=64)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return session


def call(
    method: str,
    url: str,
    json: Any = None,
    params: dict[str, Any] | None = None,
    timeout: tuple[float, float] = (5.0, 60.0),
    ok: tuple[int, ...] = (),
) -> requests.Response:
    """One request; ``EnvServerLost`` when the server does not answer, ``RemoteEnvError``
    on an error status not in ``ok``."""
    try:
        response = _session().request(method, url, json=json, params=params, timeout=timeout)
    except requests.RequestException as e:  # refused, reset, timed out, cut mid-answer
        raise EnvServerLost(f"{method} {url}: {type(e).__name__}: {e}") from None
    if response.status_code >= 400 and response.status_code not in ok:
        raise RemoteEnvError(f"{method} {url}", response.status_code, response.text)
    return response


class Balancer:
    """A family's server URLs: ``acquire`` gives the least-loaded one not marked down (all
    of them when every one is), ``release`` ends its use, ``down`` avoids one a while."""

    def __init__(self, urls: tuple[str, ...]) -> None:
        self.urls = urls
        self._load = dict.fromkeys(urls, 0)
        self._down_until = dict.fromkeys(urls, 0.0)
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def acquire(self) -> str:
        with self._lock:
            now = time.monotonic()
            up = [u for u in self.urls if self._down_until[u] <= now] or list(self.urls)
            start = next(self._turn) % len(up)  # ties go round the URLs
            rotated = up[start:] + up[:start]
            url = min(rotated, key=lambda u: self._load[u])
            self._load[url] += 1
            return url

    def release(self, url: str) -> None:
        with self._lock:
            self._load[url] -= 1

    def down(self, url: str, seconds: float) -> None:
        with self._lock:
            self._down_until[url] = time.monotonic() + seconds


def balancer(urls: list[str]) -> Balancer:
    """This process's balancer over ``urls`` (one per URL list, shared by its envs)."""
    key = tuple(u.rstrip("/") for u in urls)
    with _balancers_lock:
        if key not in _balancers:
            _balancers[key] = Balancer(key)
        return _balancers[key]
