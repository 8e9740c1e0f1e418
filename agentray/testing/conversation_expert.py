"""The scripted expert behind a plain OpenAI conversation: the stand-in endpoints
(``expert_endpoint``, ``benchmark_endpoint``) see text alone, so the task is found from the
conversation (``TaskIndex``) and the expert's next action for it is the reply."""

from __future__ import annotations

import hashlib
from typing import Any

from agentray.envs.registry import TaskIndex, env_class, family_names, make_env
from agentray.policies.expert import expert_reply
from agentray.types import Message


def available_families() -> list[str]:
    """Every registered family (held-in, then held-out) that can run on this host."""
    return [f for f in family_names(held_out=True) if env_class(f).unavailable() is None]


class ConversationExpert:
    """The expert's next reply for a plain OpenAI conversation.

    HTTP drops the ``loss: False`` marks on demonstration turns, which ``TaskIndex`` and
    ``expert_reply`` rely on; they are put back from the env's own opening turns, found by
    hashing the conversation's first ``len(prompt)`` messages.

    The families of ``family_configs`` are indexed now; those of ``lazy`` (name -> settings)
    one at a time, in order, when a conversation matches none indexed so far (building a
    family's tasks takes seconds: MiniWoB++ starts a browser).
    """

    def __init__(
        self,
        family_configs: dict[str, dict[str, Any] | None],
        lazy: dict[str, dict[str, Any] | None] | None = None,
    ) -> None:
        self.index = TaskIndex({})
        self._demo_marks: dict[str, tuple[int, ...]] = {}
        self._prompt_lengths: set[int] = set()
        self.indexed: list[str] = []
        self.unindexable: dict[str, str] = {}
        for name, cfg in family_configs.items():
            self._add_family(name, cfg)
        self._lazy = {k: v for k, v in (lazy or {}).items() if k not in family_configs}

    def _add_family(self, name: str, cfg: dict[str, Any] | None) -> None:
        env = make_env(name, cfg)
        for split in ("train", "test"):
            for task in env.tasks(split):
                prompt = env.prompt(task)
                self.index.add(env, task)
                marks = tuple(i for i, m in enumerate(prompt) if m.get("loss") is False)
                self._demo_marks[_prompt_key(prompt)] = marks
                self._prompt_lengths.add(len(prompt))
        self.indexed.append(name)

    def with_demo_marks(self, messages: list[Message]) -> list[Message]:
        for length in sorted(self._prompt_lengths, reverse=True):
            marks = self._demo_marks.get(_prompt_key(messages[:length]))
            if marks is not None and len(messages) >= length:
                out = [dict(m) for m in messages]
                for i in marks:
                    out[i]["loss"] = False
                return out  # type: ignore[return-value]
        return messages

    def reply(self, messages: list[Message]) -> str:
        """Raises KeyError when no known task matches the conversation (after indexing
        every lazy family)."""
        while True:
            try:
                return expert_reply(self.index, self.with_demo_marks(messages))
            except KeyError:
                if not self._lazy:
                    if self.unindexable:
                        raise KeyError(f"no known task (not indexed: {self.unindexable})") from None
                    raise
                name = next(iter(self._lazy))
                try:
                    self._add_family(name, self._lazy.pop(name))
                except Exception as e:  # its tasks cannot be built here: said in the 400
                    self.unindexable[name] = f"{type(e).__name__}: {e}"


def _prompt_key(messages: list[Message]) -> str:
    digest = hashlib.sha1()
    for m in messages:
        digest.update(f"{m['role']}\x00{m['content']}\x01".encode())
    return digest.hexdigest()
