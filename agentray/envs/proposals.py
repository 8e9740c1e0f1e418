"""Teacher-written task proposals: what every family that accepts them shares.

``agentray instruct`` asks a teacher for new tasks written as JSON proposals (a question, its
solution and a check). A family that accepts them exposes, in its own module:

- ``PROPOSAL_GUIDE``: what its tasks are and the JSON fields of a proposal (for the prompt);
- ``proposal_from_task(task)``: one of its own tasks written as a proposal (seed examples);
- ``task_from_proposal(proposal, task_id, config)``: the task, verified by running the
  solution and the check in the real environment, or a ``Rejected`` with the reason;
- ``instruction_of(payload)``: the text near-duplicates are measured on.

The family's checks raise ``ProposalError``; ``task_from_proposal`` turns it into
``Rejected``. A host that cannot run the environment at all (no bubblewrap) raises instead:
that is not the proposal's fault.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from agentray.envs.base import Env
from agentray.envs.episode import run_episode, scripted
from agentray.types import StepResult, TaskSpec

# Why a proposal was set aside (``Rejected.code``).
MALFORMED_JSON = "malformed_json"  # a ```json block that does not parse
MALFORMED_REPLY = "malformed_reply"  # a reply with no ```json block and no JSON at all
NOT_AN_OBJECT = "not_an_object"
MISSING_FIELD = "missing_field"
BAD_FIELD = "bad_field"  # present but of the wrong type / shape / size
SETUP_ERROR = "setup_error"  # the proposal's own setup (table, setup script) failed
SOLUTION_ERROR = "solution_error"  # the solution errors, times out or exits non-zero
CHECK_ERROR = "check_error"  # the check itself cannot run
EMPTY_ANSWER = "empty_answer"  # the solution answers nothing (or NULL)
CHECK_FAILED = "check_failed"  # the check does not pass after the solution
CHECK_PASSES_WITHOUT_SOLUTION = "check_passes_without_solution"
NO_OP_SOLUTION = "no_op_solution"  # a modification task whose solution changes nothing
REPLAY_FAILED = "replay_failed"  # the expert replaying the solution in the env does not win
DUPLICATE = "duplicate"
NEAR_DUPLICATE = "near_duplicate"
TEACHER_ERROR = "teacher_error"  # the request failed after its retries
SURPLUS = "surplus"  # verified, but the family already has the tasks it wanted


class Rejected(NamedTuple):
    code: str
    detail: str

    def __str__(self) -> str:
        return f"{self.code}: {self.detail}"


class ProposalError(Exception):
    """Raised by a family's checks; carries the rejection."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.rejected = Rejected(code, detail)


def require(proposal: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    """``proposal[name]``, which must exist and be of ``kind`` (bool is never a number)."""
    if name not in proposal or proposal[name] is None:
        raise ProposalError(MISSING_FIELD, f"no {name!r}")
    value = proposal[name]
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
        raise ProposalError(BAD_FIELD, f"{name!r} must be {_kind_names(kind)}")
    return value


def require_text(proposal: dict[str, Any], name: str, max_chars: int = 2000) -> str:
    value = require(proposal, name, str).strip()
    if not value:
        raise ProposalError(MISSING_FIELD, f"{name!r} is empty")
    if len(value) > max_chars:
        raise ProposalError(BAD_FIELD, f"{name!r} is longer than {max_chars} characters")
    if "```" in value:  # it would break the markdown block the expert writes it in
        raise ProposalError(BAD_FIELD, f"{name!r} contains ```")
    return value


def optional_text(proposal: dict[str, Any], name: str, default: str) -> str:
    if proposal.get(name) is None:
        return default
    return require_text(proposal, name)


def require_object(proposal: Any) -> dict[str, Any]:
    if not isinstance(proposal, dict):
        raise ProposalError(
            NOT_AN_OBJECT, f"a proposal is a JSON object, got {_json_kind(proposal)}"
        )
    return proposal


def replay_expert(env: Env, task: TaskSpec) -> StepResult:
    """Play the expert's actions for ``task`` in ``env``; the last step's result."""
    episode = run_episode(env, task, scripted(env.expert_actions(task)), close=True)
    assert episode.step_s, f"the expert has no actions for {task.id}"
    return episode.result


def check_replay(env: Env, task: TaskSpec) -> None:
    result = replay_expert(env, task)
    if not result.done or result.reward < 1.0:
        raise ProposalError(
            REPLAY_FAILED,
            f"the expert replaying the solution ends {result.status.value} with reward "
            f"{result.reward} ({result.info})",
        )


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_names(kind: type | tuple[type, ...]) -> str:
    return " or ".join(_JSON_NAMES.get(k, k.__name__) for k in _kinds(kind))


def _json_kind(value: Any) -> str:
    return _JSON_NAMES.get(type(value), type(value).__name__)


_JSON_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}
