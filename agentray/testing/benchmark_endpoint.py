"""An OpenAI-compatible test server (real HTTP) that answers the general suites' prompts from
their gold data: a known-good and a known-bad answer source for scoring tests.

It builds the very prompts the suites send (same ``GeneralConfig``), so it can look each
request up by its last user message. The model name picks the behaviour:

- ``gold``: MMLU "The answer is (X)." with the right letter; GSM the generator's worked
  solution ending "The answer is N."; HumanEval the canonical solution as a complete
  function in a ```python block; MT-Bench a plain answer.
- ``wrong``: the next letter; N + 1; a body that raises; a plain answer.
- any model, judge prompts (FastChat's, "Please act as an impartial judge"): a short
  judgment ending "Rating: [[<judge_rating>]]".

With ``families`` it also answers env-task conversations, with the scripted expert under
``gold`` and an unparseable reply under ``wrong``. ``GET /stats`` counts requests per model.

    with BenchmarkEndpoint(GeneralConfig(max_items=10)) as ep:
        OpenAIConfig(model="gold", base_url=ep.base_url)
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agentray.eval.general.config import GeneralConfig
from agentray.eval.general.humaneval import defines_function
from agentray.eval.general.mtbench import JUDGE_MARK
from agentray.eval.general.runner import make_suite
from agentray.http_serving import ThreadedServer
from agentray.testing.conversation_expert import ConversationExpert
from agentray.testing.openai_wire import (
    PREFLIGHT_REPLY,
    approx_tokens,
    chat_completion_body,
    error_response,
    is_preflight,
)

MODELS = ("gold", "wrong", "judge")
WRONG_ENV_REPLY = "I am not sure what to do here."


def gold_reply(suite: str, item: dict[str, Any], good: bool) -> str:
    if suite == "mmlu":
        letter = item["answer"] if good else "ABCD"[("ABCD".index(item["answer"]) + 1) % 4]
        return f"The answer is ({letter})."
    if suite == "gsm_symbolic":
        from agentray.eval.general.gsm import worked_answer

        entry = item["entry"]
        if good:
            return worked_answer(entry)
        return f"Let me think. The answer is {int(float(entry['answer'])) + 1}."
    if suite == "humaneval":
        body = item["canonical_solution"] if good else "    raise NotImplementedError\n"
        function = _function_only(item["prompt"], item["entry_point"]) + body
        return f"Here is the function:\n\n```python\n{function}```\n"
    return "Here is a thoughtful answer to your question."  # mt_bench


def _function_only(prompt: str, entry_point: str) -> str:
    """The prompt from the entry point's ``def`` on (a chat model repeats only that)."""
    lines = prompt.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if defines_function(line, entry_point))
    return "".join(lines[start:])


def _key(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


class BenchmarkEndpoint:
    """The server on a background thread of this process (uvicorn's own event loop)."""

    def __init__(
        self,
        general: GeneralConfig,
        families: list[str] | None = None,
        family_configs: dict[str, dict[str, Any]] | None = None,
        judge_rating: float = 7,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:

        self.judge_rating = judge_rating
        self.index = self._index(general)
        configs = family_configs or {}
        self.expert = (
            ConversationExpert({f: configs.get(f) for f in families}) if families else None
        )
        self.requests: Counter[str] = Counter()
        self.host = host
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
                Route("/stats", self._stats, methods=["GET"]),
            ]
        )
        self._server = ThreadedServer(app, host, port, "benchmark endpoint")
        self.port: int = self._server.port

    @staticmethod
    def _index(general: GeneralConfig) -> dict[str, tuple[str, dict[str, Any]]]:
        index = {}
        for name in general.suites:
            suite = make_suite(name, general)
            for item in suite.items():
                if name == "mt_bench":
                    for turn in item["turns"]:
                        index[_key(turn)] = (name, item)
                else:
                    index[_key(suite.messages(item)[-1]["content"])] = (name, item)
        return index

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout_s: float = 30.0) -> BenchmarkEndpoint:
        self._server.start(timeout_s)
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> BenchmarkEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reply(self, model: str, messages: list[dict[str, str]]) -> str:
        """Raises KeyError for a conversation it knows nothing about."""
        if is_preflight(messages):
            return PREFLIGHT_REPLY
        if any(JUDGE_MARK in m["content"] for m in messages):
            return f"The response is adequate. Rating: [[{self.judge_rating:g}]]"
        last_user = next(m["content"] for m in reversed(messages) if m["role"] == "user")
        found = self.index.get(_key(last_user))
        if found is not None:
            suite, item = found
            return gold_reply(suite, item, good=model != "wrong")
        if self.expert is None:
            raise KeyError("no benchmark item has this prompt")
        return self.expert.reply(messages) if model != "wrong" else WRONG_ENV_REPLY  # type: ignore[arg-type]

    async def _chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        model = body.get("model")
        if model not in MODELS:
            return error_response(404, f"model {model!r} not found; served: {list(MODELS)}")
        self.requests[model] += 1
        messages = [{"role": m["role"], "content": m["content"]} for m in body["messages"]]
        try:
            text = self.reply(model, messages)
        except KeyError as e:
            return error_response(400, f"unknown conversation: {e}")
        prompt_tokens = sum(approx_tokens(m["content"]) for m in messages)
        return JSONResponse(chat_completion_body(model, text, prompt_tokens, approx_tokens(text)))

    async def _models(self, request: Request) -> JSONResponse:
        data = [{"id": m, "object": "model", "created": 0, "owned_by": "agentray"} for m in MODELS]
        return JSONResponse({"object": "list", "data": data})

    async def _stats(self, request: Request) -> JSONResponse:
        return JSONResponse({"requests": dict(self.requests)})
