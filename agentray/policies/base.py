"""The Policy contract: chat messages in, text out, for a batch of conversations."""

from __future__ import annotations

from abc import ABC, abstractmethod

from agentray.types import Completion, GenerationParams, Message


class Policy(ABC):
    """A backend that continues conversations. ``generate`` must never raise for one bad
    conversation: it returns a Completion with ``finish_reason="error"`` and ``error`` set."""

    name: str = "policy"
    backend: str = "base"

    @abstractmethod
    async def generate(
        self, batch: list[list[Message]], params: GenerationParams
    ) -> list[Completion]: ...

    def describe(self) -> dict:
        """What goes into each trajectory record's ``policy`` field."""
        return {"name": self.name, "backend": self.backend}

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        pass
