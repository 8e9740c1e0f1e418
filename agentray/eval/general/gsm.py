"""A GSM8K-style set: ``reasoning-gym``'s ``gsm_symbolic`` generator (GSM-Symbolic templates of
GSM8K problems, with new names and numbers) and its scorer.

Prompts are chain-of-thought, GSM8K style: ``n_shots`` worked demonstrations ("Question:
... Answer: <steps> The answer is N.", generated with another seed, never scored) and the
question. The final number is read from "The answer is N" / "#### N", else the last number
of the reply; ``reasoning_gym``'s scorer then decides (it gives 1.0 for the right number
only; we count 1.0 as correct).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from agentray.eval.general.base import (
    CORRECT,
    NO_ANSWER,
    WRONG,
    Ask,
    Suite,
    SuiteSkipped,
    failed_request,
)
from agentray.eval.general.config import GSMConfig

DEMO_SEED_OFFSET = 1_000_003  # demonstrations come from a disjoint seed
_NUMBER = r"-?\$?\d[\d,]*(?:\.\d+)?"
_STATED = re.compile(rf"(?:answer is|####)\s*:?\s*\**({_NUMBER})", re.IGNORECASE)
_ANY = re.compile(_NUMBER)
_COT_FINAL = re.compile(r"\n?####\s*(\S+)\s*$")


def _dataset(seed: int, size: int) -> Any:
    try:
        import reasoning_gym
    except ImportError:
        raise SuiteSkipped(
            "the GSM-style set needs `reasoning-gym`: pip install reasoning-gym "
            "(or bash scripts/install.sh)"
        ) from None
    return reasoning_gym.create_dataset("gsm_symbolic", seed=seed, size=size)


def worked_answer(entry: dict[str, Any]) -> str:
    """The generator's chain of thought, ending GSM8K-CoT style: "The answer is N."."""
    cot = entry["metadata"]["answer_cot"]
    return _COT_FINAL.sub("", cot).rstrip() + f"\nThe answer is {entry['answer']}."


def build_prompt(question: str, demos: list[dict[str, Any]]) -> str:
    head = (
        "Solve the math word problem. Think step by step, then finish with "
        '"The answer is N." where N is the final number.\n\n'
    )
    shots = "".join(f"Question: {d['question']}\nAnswer: {worked_answer(d)}\n\n" for d in demos)
    return head + shots + f"Question: {question}\nAnswer:"


def extract_number(reply: str) -> str | None:
    stated = _STATED.findall(reply)
    found = stated or _ANY.findall(reply)
    if not found:
        return None
    return found[-1].replace(",", "").replace("$", "").rstrip(".")


class GSMSymbolic(Suite):
    name = "gsm_symbolic"
    source: ClassVar[str] = "reasoning-gym gsm_symbolic (GSM-Symbolic templates of GSM8K)"

    cfg: GSMConfig

    def check_ready(self) -> None:
        _dataset(0, 1)

    def load_items(self) -> list[dict[str, Any]]:
        return self._generate(range(self.cfg.size))

    def items(self) -> list[dict[str, Any]]:
        """Only the sampled problems are generated."""
        indices = self.select(list(range(self.cfg.size)), self.general.items_limit(self.name))
        return self._generate(indices)

    def _generate(self, indices: Any) -> list[dict[str, Any]]:
        self._scorer = _dataset(self.general.seed, self.cfg.size)
        demo_set = _dataset(self.general.seed + DEMO_SEED_OFFSET, max(self.cfg.n_shots, 1))
        demos = [dict(demo_set[i]) for i in range(self.cfg.n_shots)]
        return [
            {"id": f"gsm_symbolic_{i}", "entry": dict(self._scorer[i]), "demos": demos}
            for i in indices
        ]

    def messages(self, item: dict[str, Any]) -> list[dict[str, str]]:
        return [{"role": "user", "content": build_prompt(item["entry"]["question"], item["demos"])}]

    async def run_item(self, item: dict[str, Any], ask: Ask) -> dict[str, Any]:
        entry = item["entry"]
        completion = await ask(self.messages(item), self.cfg.params)
        base = {"question": entry["question"], "gold": entry["answer"], "reply": completion.text}
        failed = failed_request(completion)
        if failed:
            return {**base, **failed}
        number = extract_number(completion.text)
        if number is None:
            return {**base, "extracted": None, "score": 0.0, "status": NO_ANSWER}
        correct = self._scorer.score_answer(number, entry) == 1.0
        return {
            **base,
            "extracted": number,
            "score": float(correct),
            "status": CORRECT if correct else WRONG,
        }
