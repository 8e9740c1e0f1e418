"""The MiniWoB++ family (held-out): real MiniWoB++ web tasks in headless Chromium, as text.

MiniWoB++ (the `miniwob` package: its HTML tasks, driven through Selenium + ChromeDriver)
poses small web-interaction tasks: click a button, a link, type into a field, ... A task
here is one task type (``subdomain``) and one MiniWoB++ seed: the page generates the same
problem (utterance and DOM) for the same seed, so a task's first observation and the
expert's plan are recorded once when the tasks are built and replayed exactly later.
Train and test tasks take disjoint seeds (``task_seed``; problem texts are unique).

The loop, in the AgentBench layout the other families use:

- the observation is text: the utterance, then the page's DOM elements one a line,
  indented under their parent: ``[ref] tag "text" id=... value="..."`` (text nodes are
  ``[-n] text "..."``).
- the agent answers ``Thought: ...`` and/or ``Action: click(<ref>)`` or
  ``Action: type(<ref>, "<text>")``; the first ``Action:`` line counts. A reply without a
  parseable action ends the episode as AGENT_INVALID_ACTION (reward 0); a ref that is not
  on the page gets ``There is no element [<ref>].`` and the episode goes on.
- MiniWoB++ ends the episode itself with a raw reward in [-1, 1] (without its time
  penalty); reward = 1.0 when it is positive (success), else 0.0, status COMPLETED;
  ``max_rounds`` turns without an end: TASK_LIMIT_REACHED. MiniWoB++'s own 10 s episode
  clock is stretched to ``episode_time_limit_s`` so a slow policy is not timed out.

The scripted expert reads the utterance's fields and the DOM (supported for
``EXPERT_TYPES``). Cost: one browser (chromium + chromedriver, ~0.8 s to start) per task
type and concurrent episode, lent from a per-process free list and reused; reset ~0.1 s,
step ~0.05 s.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any, ClassVar, Literal, get_args

from pydantic import Field

from agentray.envs.base import (
    Env,
    FamilyConfig,
    no_episode_result,
    split_tasks,
    task_seed,
    tasks_from_payloads,
)
from agentray.types import Message, Status, StepResult, TaskSpec

INSTALL_HINT = (
    "MiniWoB++ is an optional extra: pip install 'agentray[heldout]' and "
    "apt-get install chromium chromium-driver"
)

# Task types with a scripted expert whose pages differ from seed to seed (focus-text and
# click-button-sequence show the same page for every seed, so their tasks would repeat).
MiniWoBTask = Literal[
    "click-button",
    "click-link",
    "enter-text",
    "enter-password",
    "click-dialog",
]

INSTRUCTION = """You are an agent that completes tasks on a web page. Each turn you see the task and the page's elements, one a line, indented under their parent: [ref] tag "text" id=... value="...".

The available actions are:
click(ref): click the element with that ref
type(ref, "text"): focus the element with that ref and type the text

Your response should use the following format:

Thought: <your thoughts>
Action: <one action>"""

OK_REPLY = "OK. I'll follow your instructions and try my best to solve the task."
DEMO_DONE = "The task is completed (reward 1)."

_ACTION_LINE = re.compile(r"^[ \t]*action[ \t]*:(.*)$", re.IGNORECASE | re.MULTILINE)
_CLICK = re.compile(r"click\(\s*(-?\d+)\s*\)", re.IGNORECASE)
_TYPE = re.compile(r'type\(\s*(-?\d+)\s*,\s*"(.*)"\s*\)', re.IGNORECASE)


class MiniWoBConfig(FamilyConfig):
    n_train: int = Field(6, ge=0, description="train tasks (MiniWoB++ seeds)")
    n_test: int = Field(6, ge=0, description="test tasks (seeds disjoint from train)")
    max_rounds: int = Field(10, gt=0, description="agent turns per episode")
    task_types: list[MiniWoBTask] = Field(
        default_factory=lambda: list(get_args(MiniWoBTask)),
        min_length=1,
        description="MiniWoB++ task types (subdomains) with a scripted expert; round-robin",
    )
    one_shot: bool = Field(True, description="prepend a 1-shot demonstration of the task type")
    episode_time_limit_s: float = Field(
        600.0, gt=0, description="MiniWoB++'s episode clock (its own default is 10 s)"
    )


# --------------------------------------------------------------------------- actions


def parse_action(reply: str) -> tuple[str, int, str | None] | None:
    """``("click", ref, None)`` or ``("type", ref, text)`` from the first ``Action:`` line."""
    match = _ACTION_LINE.search(reply)
    if match is None:
        return None
    command = match.group(1).strip()
    if m := _CLICK.fullmatch(command):
        return "click", int(m.group(1)), None
    if m := _TYPE.fullmatch(command):
        return "type", int(m.group(1)), m.group(2)
    return None


def format_action(kind: str, ref: int, text: str | None = None) -> str:
    return f"Action: click({ref})" if kind == "click" else f'Action: type({ref}, "{text}")'


# --------------------------------------------------------------------------- browsers


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


# --------------------------------------------------------------------------- observations


def _elements(observation: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "ref": int(e["ref"]),
            "parent": int(e["parent"]),
            "tag": str(e["tag"]),
            "text": str(e["text"]),
            "value": str(e["value"]),
            "id": str(e["id"]),
        }
        for e in observation["dom_elements"]
    ]


def page_text(elements: list[dict[str, Any]]) -> str:
    depth: dict[int, int] = {0: -1}
    lines = []
    for e in elements:
        depth[e["ref"]] = depth.get(e["parent"], -1) + 1
        tag = "text" if e["tag"] == "t" else e["tag"]
        line = f"{'  ' * depth[e['ref']]}[{e['ref']}] {tag}"
        if e["text"]:
            line += f' "{e["text"]}"'
        if e["id"]:
            line += f" id={e['id']}"
        if e["value"]:
            line += f' value="{e["value"]}"'
        lines.append(line)
    return "\n".join(lines)


def observation_text(utterance: str, elements: list[dict[str, Any]]) -> str:
    return f"Task: {utterance}\nPage:\n{page_text(elements)}"


# --------------------------------------------------------------------------- the expert


def _find(elements: list[dict[str, Any]], tag: str, text: str | None = None) -> list[int]:
    return [e["ref"] for e in elements if e["tag"] == tag and (text is None or e["text"] == text)]


def _only(refs: list[int], what: str) -> int:
    if len(refs) != 1:
        raise ValueError(f"expected one {what}, found {len(refs)}")
    return refs[0]


def _plan_click_button(fields, elements):
    return [("click", _only(_find(elements, "button", fields["target"]), "target button"), None)]


def _plan_click_link(fields, elements):
    return [("click", _only(_find(elements, "span", fields["target"]), "target link"), None)]


def _plan_enter_text(fields, elements):
    field = _only(_find(elements, "input_text"), "text field")
    submit = _only(_find(elements, "button", "Submit"), "Submit button")
    return [("type", field, fields["target"]), ("click", submit, None)]


def _plan_enter_password(fields, elements):
    inputs = _find(elements, "input_password")
    submit = _only(_find(elements, "button", "Submit"), "Submit button")
    return [("type", ref, fields["target"]) for ref in inputs] + [("click", submit, None)]


def _plan_click_dialog(fields, elements):
    close = [e["parent"] for e in elements if e["tag"] == "t" and e["text"] == "Close"]
    return [("click", _only(close, "dialog close button"), None)]


EXPERT_TYPES: dict[str, Callable[[dict[str, str], list[dict[str, Any]]], list]] = {
    "click-button": _plan_click_button,
    "click-link": _plan_click_link,
    "enter-text": _plan_enter_text,
    "enter-password": _plan_enter_password,
    "click-dialog": _plan_click_dialog,
}


# --------------------------------------------------------------------------- tasks


def _problem_key(payload: dict[str, Any]) -> str:
    return observation_text(payload["utterance"], payload["elements"])


def _draw(browser: Any, subdomain: str, seed: int) -> dict[str, Any]:
    observation, _ = browser.reset(seed=seed)
    elements = _elements(observation)
    fields = {str(k): str(v) for k, v in observation["fields"]}
    plan = EXPERT_TYPES[subdomain](fields, elements)
    return {
        "subdomain": subdomain,
        "seed": seed,
        "utterance": str(observation["utterance"]),
        "elements": elements,
        "plan": [list(step) for step in plan],
    }


def _build(config: MiniWoBConfig) -> dict[str, Any]:
    types = list(dict.fromkeys(config.task_types))
    limit_ms = int(config.episode_time_limit_s * 1000)
    out: dict[str, Any] = {"train": [], "test": [], "demos": {}}
    seen: set[str] = set()
    for position, subdomain in enumerate(types):
        browser = BROWSERS.acquire(subdomain, limit_ms)
        try:
            draws = [("demos", 0)] + [
                (split, index)
                for split, n in (("train", config.n_train), ("test", config.n_test))
                for index in range(position, n, len(types))
            ]
            for split, index in draws:
                payload = _unique_draw(browser, subdomain, config.seed, split, index, seen)
                if split == "demos":
                    out["demos"][subdomain] = _record_demo(browser, payload)
                else:
                    out[split].append((index, payload))
        finally:
            BROWSERS.discard(browser)  # envs run elsewhere (EnvPool actors), mostly
    for split in ("train", "test"):
        out[split] = [payload for _, payload in sorted(out[split], key=lambda x: x[0])]
    return out


def _unique_draw(browser, subdomain, base_seed, split, index, seen) -> dict[str, Any]:
    for attempt in range(50):
        seed = task_seed(f"miniwob:{subdomain}", base_seed, split, index, attempt)
        try:
            payload = _draw(browser, subdomain, seed)
        except ValueError:  # the expert cannot read this page: draw again
            continue
        if _problem_key(payload) not in seen:
            seen.add(_problem_key(payload))
            return payload
    raise RuntimeError(f"could not draw a unique {subdomain} task for {split} #{index}")


def _record_demo(browser: Any, payload: dict[str, Any]) -> dict[str, Any]:
    browser.reset(seed=payload["seed"])
    observations = []
    for kind, ref, text in payload["plan"]:
        observation, reward, done = _act(browser, kind, ref, text)
        observations.append(observation)
        if done:
            break
    if not (done and reward > 0):
        raise RuntimeError(f"the {payload['subdomain']} demonstration does not succeed")
    return {**payload, "observations": observations}


def _act(browser: Any, kind: str, ref: int, text: str | None) -> tuple[str | None, float, bool]:
    if kind == "click":
        action = browser.create_action("CLICK_ELEMENT", ref=ref)
    else:
        action = browser.create_action("FOCUS_ELEMENT_AND_TYPE_TEXT", ref=ref, text=text)
    observation, reward, done, _, info = browser.step(action)
    if done:
        return None, float(info.get("raw_reward", reward)), True
    return observation_text(observation["utterance"], _elements(observation)), 0.0, False


_BUILD_LOCK = threading.Lock()


def _built(config_json: str) -> dict[str, Any]:
    with _BUILD_LOCK:  # the EnvPool's threads: build once
        return _built_once(config_json)


@lru_cache(maxsize=8)
def _built_once(config_json: str) -> dict[str, Any]:
    return _build(MiniWoBConfig.model_validate_json(config_json))


def _tasks_by_split(built: dict[str, Any]) -> dict[str, list[TaskSpec]]:
    return tasks_from_payloads(MiniWoBEnv.name, built["train"], built["test"], "seed")


def demonstration(demo: dict[str, Any]) -> list[Message]:
    turns: list[Message] = [
        {"role": "user", "content": "Here is one example.\n" + _problem_key(demo)}
    ]
    for (kind, ref, text), observation in zip(demo["plan"], demo["observations"], strict=False):
        turns.append(
            {"role": "assistant", "content": format_action(kind, ref, text), "loss": False}
        )
        turns.append({"role": "user", "content": observation or DEMO_DONE})
    turns.append({"role": "assistant", "content": "OK.", "loss": False})
    return turns


# --------------------------------------------------------------------------- the env


class MiniWoBEnv(Env):
    name: ClassVar[str] = "miniwob"
    version: ClassVar[str] = "1"
    config_cls: ClassVar[type[FamilyConfig]] = MiniWoBConfig

    config: MiniWoBConfig

    def __init__(self, config: MiniWoBConfig | None = None) -> None:
        super().__init__(config)
        self._browser: Any = None
        self._refs: set[int] = set()
        self._rounds = 0
        self._done = True

    def _built(self) -> dict[str, Any]:
        return _built(self.config.model_dump_json())

    def tasks(self, split: str) -> list[TaskSpec]:
        return split_tasks(_tasks_by_split(self._built()), split)

    def prompt(self, task: TaskSpec) -> list[Message]:
        messages: list[Message] = [
            {"role": "user", "content": INSTRUCTION},
            {"role": "assistant", "content": OK_REPLY, "loss": False},
        ]
        if self.config.one_shot:
            messages += demonstration(self._built()["demos"][task.payload["subdomain"]])
        messages.append(
            {"role": "user", "content": "Here is your task.\n" + _problem_key(task.payload)}
        )
        return messages

    def reset(self, task: TaskSpec) -> list[Message]:
        messages = self.prompt(task)
        self.close()
        limit_ms = int(self.config.episode_time_limit_s * 1000)
        self._browser = BROWSERS.acquire(task.payload["subdomain"], limit_ms)
        observation, _ = self._browser.reset(seed=task.payload["seed"])
        self._refs = {e["ref"] for e in _elements(observation)}
        self._rounds = 0
        self._done = False
        return messages

    @staticmethod
    def action_problem(reply: str) -> str | None:
        if parse_action(reply) is None:
            return 'no `Action: click(<ref>)` or `Action: type(<ref>, "<text>")` line'
        return None

    def step(self, action: str) -> StepResult:
        if self._done or self._browser is None:
            return no_episode_result()
        self._rounds += 1
        parsed = parse_action(action)
        if parsed is None:
            return self._finish(Status.AGENT_INVALID_ACTION, 0.0, None, {"error": "no action"})
        kind, ref, text = parsed
        info: dict[str, Any] = {"action": f"{kind}({ref})"}
        if ref not in self._refs:
            observation: str | None = f"There is no element [{ref}]."
            return self._running_or_limit(observation, info)
        try:
            observation, raw_reward, done = _act(self._browser, kind, ref, text)
        except Exception as e:  # the browser died: it is gone, the episode with it
            BROWSERS.discard(self._browser)
            self._browser = None
            return self._finish(Status.TASK_ERROR, 0.0, None, {"error": f"browser: {e}"})
        if done:
            info["raw_reward"] = raw_reward
            reward = 1.0 if raw_reward > 0 else 0.0
            return self._finish(
                Status.COMPLETED, reward, f"The episode ended (reward {reward}).", info
            )
        self._refs = {int(r) for r in re.findall(r"^\s*\[(-?\d+)\]", observation, re.MULTILINE)}
        return self._running_or_limit(observation, info)

    def _running_or_limit(self, observation: str, info: dict[str, Any]) -> StepResult:
        if self._rounds >= self.config.max_rounds:
            return self._finish(Status.TASK_LIMIT_REACHED, 0.0, observation, info)
        return StepResult(observation=observation, done=False, info=info)

    def close(self) -> None:
        if self._browser is not None:
            BROWSERS.release(self._browser)
            self._browser = None
        self._done = True

    def expert_actions(self, task: TaskSpec) -> list[str]:
        return [format_action(kind, ref, text) for kind, ref, text in task.payload["plan"]]
