"""Parsing the agent's ``Act:`` and formatting command output."""

from __future__ import annotations

import re

from agentray.envs.os.prompt import TRUNCATION_NOTE


def parse_action(text: str) -> tuple[str, str | None] | None:
    """AgentBench's ``extract_action``: the last ``Act:`` line decides.

    Returns ``("bash", script)``, ``("answer", text)``, ``("finish", None)`` or None when the
    reply has no usable action (including ``Act: bash`` without a ```bash block).
    """
    for act in reversed(re.findall(r"Act:\s*(.+)", text)):
        lowered = act.lower()
        if lowered.startswith("bash"):
            blocks = re.findall(r"```bash\n(.*?)\n```", text, re.DOTALL)
            script = "\n\n".join(blocks)
            return ("bash", script) if script.strip() else None
        if lowered.startswith("finish"):
            return "finish", None
        if lowered.startswith("answer"):
            content = act[6:].strip()
            left, right = content.find("("), content.rfind(")")
            if left == -1 or right == -1:
                continue
            return "answer", content[left + 1 : right]
    return None


def format_output(
    output: str, max_chars: int, timed_out: bool, timeout_s: float, notes: tuple[str, ...] = ()
) -> str:
    """The observation AgentBench shows for a command's output, followed by a line for the
    time limit and for each sandbox limit (``notes``) the command ran into."""
    if len(output) > max_chars:
        output = output[: max_chars - 20] + TRUNCATION_NOTE
    if timed_out:
        notes = (f"[the command was killed after {timeout_s:g} seconds]", *notes)
    if notes:
        output = "\n".join([output, *notes]) if output else "\n".join(notes)
    return f"The output of the OS:\n\n{output}" if output else "The output of the OS is empty."
