"""A prefix cache for a local model: the keys/values of token-id prefixes, kept across
``generate`` calls (as vLLM's prefix caching, SGLang's radix cache).

Prompts are stored in a radix tree: each node holds a run of token ids and, per layer, the
keys/values of those positions (batch 1, ``[1, heads, tokens, head_dim]``); the path from
the root to a node spells a prefix. Prompts that share an opening (one env family's
instruction and demonstration; the earlier turns of one episode) share its nodes, so the
shared part is held once. Memory is bounded by ``max_tokens`` positions: the least recently
used leaves go first (a node is used at least as recently as any node below it).
"""

from __future__ import annotations

import itertools
from typing import Any

KV = list[tuple[Any, Any]]  # per layer: (keys, values), tokens on dim -2


class _Node:
    __slots__ = ("children", "kv", "last_used", "parent", "tokens")

    def __init__(self, tokens: list[int], kv: KV, parent: _Node | None, last_used: int) -> None:
        self.tokens = tokens
        self.kv = kv
        self.parent = parent
        self.children: dict[int, _Node] = {}
        self.last_used = last_used


def common_len(a: list[int], b: list[int], start: int = 0) -> int:
    """The length of the common prefix of ``a`` and ``b[start:]``."""
    n = min(len(a), len(b) - start)
    for k in range(n):
        if a[k] != b[start + k]:
            return k
    return n


def _slice(kv: KV, start: int, end: int | None = None) -> KV:
    """Positions ``start:end`` as tensors of their own (a view would keep its base alive)."""
    return [(k[:, :, start:end].clone(), v[:, :, start:end].clone()) for k, v in kv]


class PrefixCache:
    """Keys/values of token-id prefixes, at most ``max_tokens`` positions in all."""

    def __init__(self, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self.tokens = 0  # positions held
        self._root = _Node([], [], None, 0)
        self._clock = itertools.count(1)

    def match(self, ids: list[int]) -> tuple[int, KV | None]:
        """The longest cached prefix of ``ids``: its length and its keys/values (fresh
        tensors, per layer), or ``(0, None)``. Marks the nodes it went through as used."""
        import torch

        node, pos, parts = self._root, 0, []
        now = next(self._clock)
        while pos < len(ids) and (child := node.children.get(ids[pos])) is not None:
            n = common_len(child.tokens, ids, pos)
            child.last_used = now
            parts.append((child, n))
            pos += n
            if n < len(child.tokens):
                break
            node = child
        if pos == 0:
            return 0, None
        layers = len(parts[0][0].kv)
        kv = [
            tuple(torch.cat([c.kv[layer][i][:, :, :n] for c, n in parts], dim=-2) for i in (0, 1))
            for layer in range(layers)
        ]
        return pos, kv  # type: ignore[return-value]

    def insert(self, ids: list[int], kv: KV) -> None:
        """Store ``ids`` with ``kv``, the keys/values of all of them (only the positions
        not cached yet are copied), then evict down to ``max_tokens``."""
        node, pos = self._root, 0
        now = next(self._clock)
        while pos < len(ids):
            child = node.children.get(ids[pos])
            if child is None:
                leaf = _Node(ids[pos:], _slice(kv, pos), node, now)
                node.children[ids[pos]] = leaf
                self.tokens += len(leaf.tokens)
                break
            n = common_len(child.tokens, ids, pos)
            if n < len(child.tokens):
                child = self._split(child, n)
            child.last_used = now
            node, pos = child, pos + n
        self._evict()

    def clear(self) -> None:
        self._root.children.clear()
        self.tokens = 0

    def _split(self, node: _Node, n: int) -> _Node:
        """Split ``node`` after its first ``n`` tokens; returns the new upper part."""
        assert node.parent is not None
        upper = _Node(node.tokens[:n], _slice(node.kv, 0, n), node.parent, node.last_used)
        node.parent.children[node.tokens[0]] = upper
        node.tokens, node.kv, node.parent = node.tokens[n:], _slice(node.kv, n), upper
        upper.children[node.tokens[0]] = node
        return upper

    def _evict(self) -> None:
        while self.tokens > self.max_tokens:
            leaf = min(self._leaves(), key=lambda node: node.last_used)
            assert leaf.parent is not None
            del leaf.parent.children[leaf.tokens[0]]
            self.tokens -= len(leaf.tokens)

    def _leaves(self) -> list[_Node]:
        out, stack = [], list(self._root.children.values())
        while stack:
            node = stack.pop()
            if node.children:
                stack.extend(node.children.values())
            else:
                out.append(node)
        return out
