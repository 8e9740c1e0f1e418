"""The offline default model: a tiny Llama built locally, in HF format.

A byte-level BPE tokenizer is trained with ``tokenizers`` on the project's own text (its
source, the env prompts) plus a slice of the bundled ShareGPT file, given the Llama-2-chat
template, and saved next to a randomly initialised ``LlamaForCausalLM`` of a few million
parameters. Everything downstream loads it back with ``from_pretrained`` exactly as it
would load ``meta-llama/Llama-2-7b-chat-hf``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from agentray import storage
from agentray.model.templates import LLAMA2_CHAT_TEMPLATE
from agentray.paths import default_home

TINY_MODEL = "agentray/tiny-llama"  # the name configs use for the locally built default

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]


def resolve_model(name_or_path: str) -> str:
    """The local path or hub name to pass to ``from_pretrained``. Call it on the node that
    loads the model: a URI (``s3://...``) is downloaded into this node's cache
    (``storage.local_copy``: once, and again only when the files there changed); the tiny
    default is built once; a hub name or local path is returned as it is."""
    if storage.is_uri(name_or_path):
        return str(storage.local_copy(name_or_path))
    if name_or_path != TINY_MODEL:
        return name_or_path
    path = default_home() / "models" / "tiny-llama"
    if not (path / "config.json").exists():
        build_tiny_model(path)
    return str(path)


def model_source(name_or_path: str) -> str:
    """What the driver hands to the nodes that load the model: a URI as it is (each node
    fetches its own copy with ``resolve_model``), the tiny default built, else unchanged."""
    return name_or_path if storage.is_uri(name_or_path) else resolve_model(name_or_path)


def _corpus(max_sharegpt_records: int = 3000) -> Iterator[str]:
    package_dir = Path(__file__).resolve().parents[1]
    for file in sorted(package_dir.rglob("*.py")):
        yield file.read_text(errors="ignore")
    try:
        from agentray.envs.registry import family_names, make_env

        for name in family_names():
            env = make_env(name)
            for task in env.tasks("train")[:20]:
                yield "\n".join(m["content"] for m in env.prompt(task))
                yield "\n".join(env.expert_actions(task))
    except Exception:  # the tokenizer still trains on the rest
        pass
    from agentray.sharegpt import iter_sharegpt

    for i, record in enumerate(iter_sharegpt()):
        if i >= max_sharegpt_records:
            break
        yield "\n".join(turn["value"] for turn in record["conversations"])


def train_tokenizer(vocab_size: int = 4096):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )
    fast.chat_template = LLAMA2_CHAT_TEMPLATE
    return fast


def build_tiny_model(
    out_dir: str | Path,
    vocab_size: int = 4096,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    max_positions: int = 4096,
    seed: int = 0,
) -> Path:
    """Build the tokenizer and a randomly initialised tiny Llama; save both in HF format."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(vocab_size)
    tokenizer.save_pretrained(tmp)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 3,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(tmp)
    (tmp / "agentray_model.json").write_text(json.dumps({"built_by": "agentray", "seed": seed}))
    try:
        tmp.rename(out)  # atomic: a half-built model is never picked up
    except OSError:  # another process finished first (or an old build is there): keep it
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return out
