"""The serve app's continuous-batching decoder, in process: rows that join a running batch
at any step get exactly what HFPolicy gives them alone, and streamed text adds up."""

from __future__ import annotations

import random

import pytest

from agentray.policies.hf import HFPolicy
from agentray.serve.decode import Decoder, DecodeRequest, IncrementalText
from agentray.types import GenerationParams


@pytest.fixture(scope="module")
def policy(prompt_sensitive_model_dir) -> HFPolicy:
    return HFPolicy(prompt_sensitive_model_dir)


def decode(policy: HFPolicy, arrivals: list[tuple[int, DecodeRequest]], max_rows: int):
    """Run a Decoder; request i joins at step ``arrivals[i][0]`` (or once there is room).
    Returns the completions, the streamed text per request, the decoder, and the largest
    number of rows that were running at once and how often rows joined a running batch."""
    decoder = Decoder(policy, max_rows)
    queue = sorted(range(len(arrivals)), key=lambda i: arrivals[i][0])
    completions, streamed = {}, {i: "" for i in range(len(arrivals))}
    step, most_rows, joins = 0, 0, 0
    while queue or decoder.rows:
        newcomers = []
        while queue and arrivals[queue[0]][0] <= step and len(newcomers) < decoder.room:
            i = queue.pop(0)
            newcomers.append((i, arrivals[i][1]))
        joins += bool(newcomers and decoder.rows)
        for key, event in decoder.advance(newcomers):
            streamed[key] += event.delta
            if event.completion is not None:
                assert key not in completions
                completions[key] = event.completion
        most_rows = max(most_rows, len(decoder.rows))
        step += 1
    return [completions[i] for i in range(len(arrivals))], streamed, decoder, (most_rows, joins)


def prompts(policy: HFPolicy, n: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [
        policy.encode([{"role": "user", "content": f"task {i}: " + "why " * rng.randint(0, 20)}])
        for i in range(n)
    ]


@pytest.mark.parametrize("stop", [[], ["e", "th"]])
def test_rows_joining_a_running_batch_get_what_they_get_alone(policy, stop):
    rng = random.Random(1)
    batch = prompts(policy, 12)
    params = [GenerationParams(max_new_tokens=rng.randint(1, 16), stop=stop) for _ in batch]
    arrivals = [
        (rng.randint(0, 8), DecodeRequest(p, pa, stream=i % 2 == 0))
        for i, (p, pa) in enumerate(zip(batch, params, strict=True))
    ]
    alone = [policy.generate_ids([p], pa)[0] for p, pa in zip(batch, params, strict=True)]

    together, streamed, decoder, (most_rows, joins) = decode(policy, arrivals, max_rows=5)

    assert [c.token_ids for c in together] == [c.token_ids for c in alone]
    assert [c.text for c in together] == [c.text for c in alone]
    assert [c.finish_reason for c in together] == [c.finish_reason for c in alone]
    assert [c.prompt_tokens for c in together] == [len(p) for p in batch]
    if stop:
        assert "stop" in {c.finish_reason for c in together}
    for i, (_, request) in enumerate(arrivals):
        assert streamed[i] == (together[i].text if request.stream else "")
    assert most_rows <= 5 and not decoder.rows and decoder.cache is None
    if not stop:  # (stop strings end most rows within a step or two)
        assert joins >= 2  # rows joined running batches
        assert decoder.row_steps > decoder.steps  # steps advanced several rows at once


def test_greedy_and_sampled_rows_share_a_batch(policy):
    batch = prompts(policy, 6, seed=2)
    greedy = GenerationParams(max_new_tokens=10)
    sampled = GenerationParams(max_new_tokens=10, temperature=1.0, top_p=0.9)
    arrivals = [(0, DecodeRequest(p, sampled if i % 2 else greedy)) for i, p in enumerate(batch)]
    together, _, _, _ = decode(policy, arrivals, max_rows=8)
    for i, (prompt, completion) in enumerate(zip(batch, together, strict=True)):
        assert completion.completion_tokens == 10 or completion.finish_reason == "stop"
        if i % 2 == 0:
            assert completion.token_ids == policy.generate_ids([prompt], greedy)[0].token_ids


def test_batch_of_one_runs_requests_one_after_another(policy):
    batch = prompts(policy, 3, seed=3)
    params = GenerationParams(max_new_tokens=5)
    together, _, decoder, (most_rows, joins) = decode(
        policy, [(0, DecodeRequest(p, params)) for p in batch], max_rows=1
    )
    assert most_rows == 1 and joins == 0 and decoder.row_steps == decoder.steps == 3 * 4
    assert [c.token_ids for c in together] == [
        policy.generate_ids([p], params)[0].token_ids for p in batch
    ]


def test_incremental_text_waits_for_whole_characters(policy):
    tokenizer = policy.tokenizer
    ids = tokenizer.encode("naïve café 日本語 ok")
    text = IncrementalText(tokenizer)
    seen = []
    for token in ids:
        text.add(token)
        seen.append(text.text)
    assert text.text == tokenizer.decode(ids)
    assert all("\ufffd" not in s for s in seen)
    assert all(b.startswith(a) for a, b in zip(seen[:-1], seen[1:], strict=True))


def test_an_abandoned_row_leaves_at_its_next_step(policy):
    batch = prompts(policy, 2, seed=4)
    params = GenerationParams(max_new_tokens=50)
    decoder = Decoder(policy, max_rows=4)
    leaving, staying = DecodeRequest(batch[0], params), DecodeRequest(batch[1], params)
    decoder.advance([("leaving", leaving), ("staying", staying)])
    decoder.advance([])
    leaving.abandoned = True
    events = dict(decoder.advance([]))
    assert events["leaving"].completion.completion_tokens == 3
    assert [row.key for row in decoder.rows] == ["staying"] and decoder.abandoned == 1
