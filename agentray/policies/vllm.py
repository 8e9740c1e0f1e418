"""vLLM policy: the local-model backend for a GPU (optional extra ``agentray[vllm]``).

Same contract and the same token-in-token-out records as ``HFPolicy`` (both are
``ChatTemplatePolicy``): conversations are templated with the model's own chat template
and handed to ``vllm.LLM.generate`` as token ids, whose paged attention, continuous
batching and prefix caching serve every conversation of a call at once. Only this module imports
vllm, and only when the backend is built; on a machine without vllm or without a CUDA GPU
construction fails with what to install or use instead (``backend: hf`` runs on CPU).

Smoke test on a GPU machine::

    python -m agentray.policies.vllm --model agentray/tiny-llama
    python -c "from agentray.policies.vllm import smoke; print(smoke())"
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

from agentray.model.chat import truncate_at_stop
from agentray.model.tiny import TINY_MODEL, resolve_model
from agentray.policies.config import VLLMConfig
from agentray.policies.hf import ChatTemplatePolicy
from agentray.types import Completion, GenerationParams, Message

INSTALL_HINT = (
    "policy backend 'vllm' needs the vllm package and a CUDA GPU: "
    "pip install 'agentray[vllm]' on a GPU machine; on CPU use backend 'hf'"
)


def import_vllm() -> Any:
    """The vllm module, or an error that says what is missing (the package, or a GPU)."""
    try:
        import vllm
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from e
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(
            "policy backend 'vllm' needs a CUDA GPU and none is visible "
            "(torch.cuda.is_available() is False); on CPU use backend 'hf'"
        )
    return vllm


class VLLMPolicy(ChatTemplatePolicy):
    backend = "vllm"

    def __init__(
        self,
        model: str = TINY_MODEL,
        dtype: str = "auto",
        max_batch_size: int = 256,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        enable_prefix_caching: bool = True,
        seed: int = 0,
        **engine_kwargs: Any,
    ) -> None:
        """``max_batch_size`` is vLLM's ``max_num_seqs`` (sequences decoded together);
        ``engine_kwargs`` go to ``vllm.LLM`` as they are (e.g. ``tensor_parallel_size``,
        ``enforce_eager``)."""
        vllm = import_vllm()
        self.name = model
        self.max_batch_size = max_batch_size
        self._vllm = vllm
        self.llm = vllm.LLM(
            model=resolve_model(model),
            dtype=dtype,
            max_num_seqs=max_batch_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            enable_prefix_caching=enable_prefix_caching,
            seed=seed,
            **engine_kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.context_window = _max_model_len(self.llm) or max_model_len or 0
        self._lock = threading.Lock()  # LLM.generate is not re-entrant

    @classmethod
    def from_config(cls, cfg: VLLMConfig) -> VLLMPolicy:
        return cls(**cfg.model_dump(exclude={"backend", "params"}))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "backend": self.backend, "device": "cuda"}

    def generate_ids(self, prompts: list[list[int]], params: GenerationParams) -> list[Completion]:
        if not prompts:
            return []
        requests = [{"prompt_token_ids": ids} for ids in prompts]
        with self._lock:
            results = self.llm.generate(requests, self.sampling_params(params), use_tqdm=False)
        out = [
            self._completion(ids, r.outputs[0], params)
            for ids, r in zip(prompts, results, strict=True)
        ]
        self._count_call(out)
        return out

    def sampling_params(self, params: GenerationParams) -> Any:
        return self._vllm.SamplingParams(
            n=1,
            max_tokens=params.max_new_tokens,
            temperature=params.temperature,  # 0 = greedy
            top_p=params.top_p if params.temperature > 0 else 1.0,
            stop=list(params.stop) or None,
        )

    def _completion(self, prompt: list[int], output: Any, params: GenerationParams) -> Completion:
        # vLLM already ends the text before a stop string; cutting again is a no-op there
        # and keeps the text rule identical to HFPolicy's.
        text, hit_stop = truncate_at_stop(output.text, params.stop)
        reason = output.finish_reason
        if reason not in ("stop", "length"):
            reason = "error"
        token_ids = list(output.token_ids)
        return Completion(
            text=text,
            finish_reason="stop" if hit_stop else reason,
            prompt_token_ids=list(prompt),
            token_ids=token_ids,
            prompt_tokens=len(prompt),
            completion_tokens=len(token_ids),
            error=None if reason != "error" else f"vllm finish_reason={output.finish_reason}",
        )


def _max_model_len(llm: Any) -> int:
    for path in (("llm_engine", "model_config"), ("model_config",)):
        obj = llm
        for attr in path:
            obj = getattr(obj, attr, None)
        if obj is not None and getattr(obj, "max_model_len", None):
            return int(obj.max_model_len)
    return 0


def smoke(
    model: str = TINY_MODEL, n: int = 32, max_new_tokens: int = 64, **kwargs: Any
) -> dict[str, Any]:
    """Build the policy, generate for ``n`` env prompts (greedy) and report throughput and
    two sample completions: a one-line check that vLLM works on this machine."""
    from agentray.envs.registry import family_names, make_env

    prompts: list[list[Message]] = []
    for family in family_names():
        env = make_env(family)
        prompts += [env.prompt(t) for t in env.tasks("train")[:n]]
    conversations = [prompts[i % len(prompts)] for i in range(n)]
    policy = VLLMPolicy(model, **kwargs)
    params = GenerationParams(max_new_tokens=max_new_tokens)
    policy.generate_sync(conversations[:1], params)  # warm-up (CUDA graphs, allocator)
    start = time.perf_counter()
    out = policy.generate_sync(conversations, params)
    seconds = time.perf_counter() - start
    tokens = sum(c.completion_tokens for c in out)
    return {
        "model": model,
        "conversations": n,
        "generated_tokens": tokens,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
        "finish_reasons": sorted({c.finish_reason for c in out}),
        "samples": [c.text[:80] for c in out[:2]],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=smoke.__doc__)
    parser.add_argument("--model", default=TINY_MODEL)
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args(argv)
    print(json.dumps(smoke(args.model, args.n, args.max_new_tokens), indent=2))


if __name__ == "__main__":
    main()
