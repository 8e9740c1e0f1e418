"""An ASGI app served by uvicorn on a thread of this process, and a child server's
announced URL: what agentray's own HTTP servers (env servers, test endpoints) share."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from typing import Any


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one), reusable at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class ThreadedServer:
    """``app`` on uvicorn's own event loop on a daemon thread; the socket is bound at
    construction, so ``port`` is known before ``start``. ``what`` names it in errors."""

    def __init__(self, app: Any, host: str, port: int, what: str, **config: Any) -> None:
        import uvicorn

        self.what = what
        self.host = host
        self._socket = bound_socket(host, port)
        self.port: int = self._socket.getsockname()[1]
        settings = {"log_level": "warning", "access_log": False, "lifespan": "off"} | config
        self._server = uvicorn.Server(uvicorn.Config(app, **settings))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def open_connections(self) -> int:
        """Client connections open now (kept alive between requests, or busy)."""
        return len(self._server.server_state.connections)

    def start(self, timeout_s: float = 30.0) -> None:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name=self.what, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.what} did not start on {self.url}")
            time.sleep(0.01)

    def stop(self, timeout_s: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._socket.close()


def announced_url(proc: subprocess.Popen, ready_line: str, timeout_s: float) -> str | None:
    """The URL a child server prints after ``ready_line`` on its stdout (None: not within
    ``timeout_s``); a thread reads the lines, so the wait has its timeout."""
    found: list[str] = []
    ready = threading.Event()

    def watch() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(ready_line) and not ready.is_set():
                found.append(line[len(ready_line) :].strip())
                ready.set()

    threading.Thread(target=watch, daemon=True).start()
    return found[0] if ready.wait(timeout_s) else None
