"""The OS env: one bubblewrap sandbox over a scratch directory per episode, every command
under the config's limits, and the agent told which limit a command ran into."""

from __future__ import annotations

import weakref
from pathlib import Path

from agentray.envs.base import Env, action_or_invalid
from agentray.envs.generate import split_tasks
from agentray.envs.os.actions import format_output, parse_action
from agentray.envs.os.config import OSConfig
from agentray.envs.os.prompt import INSTRUCTION, ONE_SHOT, ONE_SHOT_QUESTION
from agentray.envs.os.tasks import all_tasks, materialize, problem_text
from agentray.envs.sandbox import (
    Sandbox,
    SandboxUnavailable,
    bwrap_available,
    check_sandbox,
    sandbox_uid,
)
from agentray.envs.scratch import Scratch
from agentray.envs.task_files import file_tasks
from agentray.types import Message, Status, StepResult, TaskSpec


class OSEnv(Env[OSConfig]):
    name = "os"
    metric_label = "success rate (%)"

    _sandbox: Sandbox | None = None
    _cleanup: weakref.finalize | None = None

    def tasks(self, split: str) -> list[TaskSpec]:
        generated = all_tasks(self.config.model_dump_json(exclude={"task_files"}))
        return split_tasks(generated, split) + file_tasks(self.name, self.config.task_files, split)

    def prompt(self, task: TaskSpec) -> list[Message]:
        first = INSTRUCTION + "Now, my problem is:\n\n" + ONE_SHOT_QUESTION
        return [
            {"role": "user", "content": first},
            *(dict(m) for m in ONE_SHOT),  # type: ignore[misc]
            {"role": "user", "content": problem_text(task.payload)},
        ]

    @classmethod
    def unavailable(cls) -> str | None:
        return None if bwrap_available() else "no usable bubblewrap (bwrap) on this host"

    def start(self, task: TaskSpec) -> None:
        """Materialise the task's files in a fresh scratch dir; raises ``SandboxUnavailable``
        (naming the setting) where bwrap is unusable or a configured limit cannot hold."""
        self.close()
        scratch, self._sandbox = episode_sandbox(self.config, task.payload["files"])
        self._cleanup = weakref.finalize(self, scratch.release)

    @property
    def scratch_root(self) -> Path | None:
        """The host directory of the running episode (None between episodes)."""
        return self._sandbox.root if self._sandbox is not None else None

    @staticmethod
    def action_problem(reply: str) -> str | None:
        if parse_action(reply) is None:
            return "no usable `Act:` (bash with a ```bash block, answer(...) or finish)"
        return None

    def parse(self, reply: str) -> tuple[str, str | None]:
        return action_or_invalid(parse_action(reply), "no valid action")

    def act(self, action: tuple[str, str | None]) -> StepResult:
        kind, content = action
        try:
            if kind != "bash":
                correct = self._judge(content)
                info = {"answer": content, "correct": correct}
                return self._finish(Status.COMPLETED, float(correct), None, info)
            result = self._sandbox.run(content)
        except (OSError, SandboxUnavailable) as e:  # the host failed, not the agent
            return self._finish(Status.TASK_ERROR, 0.0, None, {"error": repr(e)})
        observation = format_output(
            result.output,
            self.config.max_output_chars,
            result.timed_out,
            self.config.command_timeout_s,
            result.limits_hit,
        )
        return StepResult(observation=observation, done=False, info={"exit_code": result.exit_code})

    def limit(self, result: StepResult) -> StepResult:
        return self._finish(Status.TASK_LIMIT_REACHED, 0.0, result.observation, {})

    def _judge(self, answer: str | None) -> bool:
        evaluation = self._task.payload["evaluation"]
        if "match" in evaluation:
            return answer is not None and answer.strip() == evaluation["match"]
        result = self._sandbox.run(evaluation["check"], [str(answer)])
        return result.exit_code == 0 and not result.timed_out

    def stop(self) -> None:
        if self._cleanup is not None:
            self._cleanup()  # removes the scratch dir (once)
        self._cleanup = None
        self._sandbox = None

    def expert_actions(self, task: TaskSpec) -> list[str]:
        payload = task.payload
        bash = f"Think: {payload['think']}\n\nAct: bash\n\n```bash\n{payload['command']}\n```"
        expected = payload["evaluation"].get("match")
        if expected is None:
            final = "Think: The command ran, so the task is done.\n\nAct: finish"
        else:
            final = f"Think: Now I get the answer, it is {expected}.\n\nAct: answer({expected})"
        return [bash, final]


def episode_sandbox(config: OSConfig, files: dict[str, str]) -> tuple[Scratch, Sandbox]:
    """A fresh scratch folder holding ``files`` and the sandbox over it, under the config's
    limits; the caller releases the scratch. Raises ``SandboxUnavailable`` naming the
    setting where bwrap is unusable or a configured limit cannot hold."""
    limits = config.sandbox_limits()
    check_sandbox(limits, config.sandbox_uid)
    owner = sandbox_uid(limits, config.sandbox_uid)  # None: agentray's own uid
    scratch = Scratch(config.scratch_dir, config.scratch_mb, owner)
    try:
        materialize(scratch.path, files)
        box = Sandbox(
            scratch.path,
            timeout_s=config.command_timeout_s,
            workdir=config.workdir,
            limits=limits,
            uid=config.sandbox_uid,
        )
    except BaseException:
        scratch.release()
        raise
    return scratch, box
