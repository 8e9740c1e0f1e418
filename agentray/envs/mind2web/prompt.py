"""MindAct's prompt: instruction, step prompt, gold replies, demonstrations."""

from __future__ import annotations

from typing import Any

# MindAct's system prompt (llm_prompt.json), verbatim, then the answer format in words.
INSTRUCTION = (
    "You are a helpful assistant that is great at website design, navigation, and executing "
    "tasks for the user.\n\n"
    "Step by step, I will show you a simplified HTML page, the task, the previous actions and "
    "a list of choices. Pick the element to interact with next and the operation (CLICK, TYPE "
    "or SELECT); for TYPE and SELECT also give the text to type or the option to select. "
    "Answer in this format:\n"
    "Thought: your reasoning\nAnswer: B.\nAction: TYPE\nValue: the text"
)


def step_prompt(payload: dict[str, Any], k: int, previous_k: int = 5) -> str:
    """MindAct's multiple-choice prompt for step ``k`` (AgentBench's ``'''html'''`` framing)."""
    step = payload["steps"][k]
    history = [s["repr"] for s in payload["steps"][:k]]
    history = history[len(history) - previous_k :] if previous_k else []
    choices = "\n".join(f"{chr(66 + i)}. {c}" for i, c in enumerate(step["choices"]))
    return (
        f"'''\n{step['html']}\n'''\n\n"
        "Based on the HTML webpage above, try to complete the following task:\n"
        f"Task: {payload['goal']}\n"
        f"Previous actions:\n{chr(10).join(history) if history else 'None'}\n"
        "What should be the next action? Please select from the following choices "
        "(If the correct action is not in the page above, please select A. 'None of the above'):\n\n"
        f"A. None of the above\n{choices}"
    )


def problem_text(payload: dict[str, Any]) -> str:
    return step_prompt(payload, 0)


def gold_reply(step: dict[str, Any]) -> str:
    """The expert's answer to one step: a thought, then MindAct's answer format."""
    reply = f"Thought: {step['thought']}\nAnswer: {chr(66 + step['answer'])}.\nAction: {step['op']}"
    return reply + (f"\nValue: {step['value']}" if step["op"] != "CLICK" else "")
