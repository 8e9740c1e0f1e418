"""The serve app's continuous-batching decoder, in process: rows that join a running batch
at any step get exactly what HFPolicy gives them alone (and a seeded sample what it gets
alone), streamed text adds up and never shows a stop string, and logprobs are the model's."""

from __future__ import annotations

import random

import pytest

from agentray.model.chat import stop_prefix_len
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


def run_alone(policy: HFPolicy, request: DecodeRequest):
    """One request through a fresh Decoder: its completion and its streamed text."""
    [completion], streamed, _, _ = decode(policy, [(0, request)], max_rows=1)
    return completion, streamed[0]


def test_stop_prefix_len_holds_back_only_what_may_begin_a_stop_string():
    assert stop_prefix_len("hello wor", ["world"]) == 3
    assert stop_prefix_len("hello", ["world"]) == 0
    assert stop_prefix_len(" sa", ["say in"]) == 2  # shorter than the stop string
    assert stop_prefix_len("ab", ["abc", "bcd"]) == 2
    assert stop_prefix_len("xyz", []) == 0
    assert stop_prefix_len("abc", ["abc"]) == 0  # a whole stop string ends the row instead


def test_streams_never_show_a_stop_string_and_add_up_to_the_text(policy):
    """Stop strings cut from each sample's own text, at its start (longer than its first
    token: the case that leaked) and anywhere else; sampled with a seed, so the streamed,
    the plain and the stop-free runs are the same sample."""
    rng = random.Random(5)
    checked = 0
    for trial, prompt in enumerate(prompts(policy, 10, seed=5)):
        params = GenerationParams(max_new_tokens=10, temperature=1.0 if trial % 2 else 0.0)
        free, _ = run_alone(policy, DecodeRequest(prompt, params, seed=trial))
        text = free.text
        if len(text) < 4:
            continue
        start = 0 if trial % 3 == 0 else rng.randrange(len(text) - 2)
        stop = text[start : start + rng.randint(2, 8)]
        with_stop = params.model_copy(update={"stop": [stop, "\x00never"]})
        streamed_req = DecodeRequest(prompt, with_stop, stream=True, seed=trial)
        streamed_completion, streamed = run_alone(policy, streamed_req)
        plain, _ = run_alone(policy, DecodeRequest(prompt, with_stop, seed=trial))
        assert streamed == streamed_completion.text == plain.text == text[: text.find(stop)]
        assert plain.finish_reason == "stop"
        checked += 1
    assert checked >= 6


def test_a_seeded_row_samples_the_same_alone_and_in_any_batch(policy):
    batch = prompts(policy, 6, seed=6)
    sampled = GenerationParams(max_new_tokens=12, temperature=1.0)
    seeded = DecodeRequest(batch[0], sampled, seed=1234)
    alone, _ = run_alone(policy, seeded)
    again, _ = run_alone(policy, DecodeRequest(batch[0], sampled, seed=1234))
    # the same seeded request joins a running batch of unseeded sampled rows at step 3
    arrivals = [(0, DecodeRequest(p, sampled)) for p in batch[1:]]
    arrivals.append((3, DecodeRequest(batch[0], sampled, seed=1234)))
    together, _, _, (_, joins) = decode(policy, arrivals, max_rows=8)

    assert joins >= 1
    assert alone.token_ids == again.token_ids == together[-1].token_ids
    other_seed, _ = run_alone(policy, DecodeRequest(batch[0], sampled, seed=99))
    greedy = policy.generate_ids([batch[0]], GenerationParams(max_new_tokens=12))[0]
    assert other_seed.token_ids != alone.token_ids
    assert greedy.token_ids != alone.token_ids


def _oracle_logprobs(policy: HFPolicy, prompt: list[int], generated: list[int]):
    """log_softmax of one forward pass over prompt + completion: the model's own
    distribution at every generated position, computed independently of the decoder."""
    import torch

    with torch.inference_mode():
        ids = torch.tensor([prompt + generated])
        logits = policy.model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
        return torch.log_softmax(logits.float(), dim=-1)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_logprobs_are_the_models_own_and_streams_report_each_token_once(policy, temperature):
    batch = prompts(policy, 3, seed=7)
    params = GenerationParams(max_new_tokens=10, temperature=temperature, stop=["e "])
    arrivals = [(i, DecodeRequest(p, params, seed=i, logprobs=3)) for i, p in enumerate(batch)]
    together, _, _, _ = decode(policy, arrivals, max_rows=4)
    for i, (prompt, completion) in enumerate(zip(batch, together, strict=True)):
        streamed_lp: list = []
        decoder = Decoder(policy, max_rows=1)
        events = decoder.advance([(0, DecodeRequest(prompt, params, True, seed=i, logprobs=3))])
        while True:
            for _, event in events:
                streamed_lp += event.logprobs or []
            if not decoder.rows:
                break
            events = decoder.advance([])
        assert [e.token for e in streamed_lp] == completion.token_ids

        oracle = _oracle_logprobs(policy, prompt, completion.token_ids)
        for k, entry in enumerate(streamed_lp):
            assert entry.logprob == pytest.approx(float(oracle[k, entry.token]), abs=1e-4)
            assert entry.logprob <= 0
            values = [lp for _, lp in entry.top]
            assert len(entry.top) == 3 and values == sorted(values, reverse=True)
            best = oracle[k].topk(3)
            assert [t for t, _ in entry.top] == best.indices.tolist()
            assert values == pytest.approx(best.values.tolist(), abs=1e-4)
            if temperature == 0:
                assert entry.token == entry.top[0][0]
