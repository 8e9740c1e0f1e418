"""Chat-template presets: the template a tokenizer renders conversations with.

``model`` keeps the tokenizer's own template. ``llama-2-chat`` is the template published
with meta-llama/Llama-2-*-chat-hf; ``agentlm`` is the same with AgentLM's fixed system
prompt ("The models follow the conversation format of Llama-2-chat, with system prompt fixed
as `You are a helpful, respectful and honest assistant.`" — THUDM/AgentTuning README) used
whenever a conversation brings no system turn of its own. Any other value is read as a path
to a Jinja file. The chosen template travels with the tokenizer the process stage saves, so
training and serving render prompts exactly as the data was masked.
"""

from __future__ import annotations

from pathlib import Path

AGENTLM_SYSTEM_PROMPT = "You are a helpful, respectful and honest assistant."

_LLAMA2_CHAT = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = DEFAULT_SYSTEM %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}"
)

# The Llama-2-chat template as published (no system prompt unless the conversation has one).
LLAMA2_CHAT_TEMPLATE = _LLAMA2_CHAT.replace("DEFAULT_SYSTEM", "false")
AGENTLM_CHAT_TEMPLATE = _LLAMA2_CHAT.replace("DEFAULT_SYSTEM", repr(AGENTLM_SYSTEM_PROMPT))

CHAT_TEMPLATES = {"llama-2-chat": LLAMA2_CHAT_TEMPLATE, "agentlm": AGENTLM_CHAT_TEMPLATE}


def resolve_chat_template(preset: str) -> str | None:
    """The Jinja text for ``preset``; None for ``model`` (keep the tokenizer's own)."""
    if preset == "model":
        return None
    if preset in CHAT_TEMPLATES:
        return CHAT_TEMPLATES[preset]
    path = Path(preset)
    if not path.is_file():
        raise ValueError(
            f"chat_template {preset!r} is neither a preset ({', '.join(['model', *CHAT_TEMPLATES])}) "
            "nor a Jinja file"
        )
    return path.read_text()


def apply_chat_template_preset(tokenizer, preset: str):
    """Set ``tokenizer.chat_template`` from ``preset`` (in place) and return the tokenizer."""
    template = resolve_chat_template(preset)
    if template is not None:
        tokenizer.chat_template = template
    return tokenizer
