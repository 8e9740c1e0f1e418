"""Headless Chromium browsers, lent to one env at a time."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import threading
from typing import Any

from agentray.envs.miniwob.config import INSTALL_HINT

# Neither chromedriver nor chromium dies with the Python process that started them (an
# EnvPool actor ends with ray.kill, so no atexit runs). The browser binary is this wrapper:
# it becomes chromium (exec keeps its pid, so chromedriver's quit still closes it) after
# starting a watchdog that ends chromium and chromedriver once that process is gone.
_CHROMIUM_WRAPPER = """#!/bin/sh
owner="$AGENTRAY_BROWSER_OWNER" browser=$$ driver=$PPID
if [ -n "$owner" ]; then
  (
    while kill -0 "$owner" 2>/dev/null && kill -0 "$browser" 2>/dev/null; do sleep 1; done
    kill "$browser" "$driver" 2>/dev/null
  ) </dev/null >/dev/null 2>&1 &
fi
exec "$AGENTRAY_CHROMIUM" "$@"
"""


def _browser_environment() -> None:
    """Point Selenium at the system's chromium (never let it fetch a driver), through a
    wrapper that ends the browser with its chromedriver."""
    os.environ.setdefault("SE_AVOID_STATS", "true")
    if os.environ.get("MINIWOB_CHROME_BINARY"):
        return
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        raise RuntimeError(f"no chromium / chromedriver on PATH; {INSTALL_HINT}")
    from agentray.paths import default_home

    wrapper = default_home() / "miniwob" / "chromium-with-owner.sh"
    if not wrapper.exists() or wrapper.read_text() != _CHROMIUM_WRAPPER:
        wrapper.parent.mkdir(parents=True, exist_ok=True)
        tmp = wrapper.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(_CHROMIUM_WRAPPER)
        tmp.chmod(0o755)
        os.replace(tmp, wrapper)
    os.environ["AGENTRAY_CHROMIUM"] = binary
    os.environ["AGENTRAY_BROWSER_OWNER"] = str(os.getpid())
    os.environ["MINIWOB_CHROME_BINARY"] = str(wrapper)
    os.environ["MINIWOB_CHROMEDRIVER"] = driver


def _start_browser(subdomain: str, time_limit_ms: int) -> Any:
    try:
        from miniwob.environment import MiniWoBEnvironment
        from miniwob.reward import get_raw_reward
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from None
    _browser_environment()
    browser = MiniWoBEnvironment(subdomain, reward_processor=get_raw_reward)
    browser.set_record_screenshots(False)
    browser.instance.driver.execute_script(f"core.EPISODE_MAX_TIME = {time_limit_ms};")
    return browser


class _Browsers:
    """This process's started browsers, one task type each, lent to one env at a time."""

    def __init__(self) -> None:
        self._idle: dict[tuple[str, int], list[Any]] = {}
        self._lock = threading.Lock()
        self.started = 0

    def acquire(self, subdomain: str, time_limit_ms: int) -> Any:
        key = (subdomain, time_limit_ms)
        with self._lock:
            if self._idle.get(key):
                return self._idle[key].pop()
        browser = _start_browser(subdomain, time_limit_ms)
        browser.agentray_key = key
        with self._lock:
            self.started += 1
        return browser

    def release(self, browser: Any) -> None:
        with self._lock:
            self._idle.setdefault(browser.agentray_key, []).append(browser)

    @staticmethod
    def discard(browser: Any) -> None:
        with contextlib.suppress(Exception):  # a dead browser (or at exit): nothing to close
            browser.instance.driver.quit()

    def close_idle(self) -> None:
        with self._lock:
            idle = [b for group in self._idle.values() for b in group]
            self._idle.clear()
        for browser in idle:
            self.discard(browser)


BROWSERS = _Browsers()


atexit.register(BROWSERS.close_idle)
