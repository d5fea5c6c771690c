"""The continuous-batching engine on a tiny random Llama: exactness in a busy batch, joins and leaves,
chunked prefill, cancellation, stop strings, limits and seeded sampling."""

from __future__ import annotations

import pytest
import torch

from modelshop.llm.engine import FINISH_CANCELLED, FINISH_LENGTH, FINISH_STOP, Engine
from modelshop.llm.sampling import SamplingParams

PROMPTS = [
    "Hello! How can",
    "To reset your password, open Settings and choose Security. Refunds take",
    "The",
    "Thank you for your patience; a person from our team will reply soon. " * 4,   # longer than a chunk
    "0123456789 abc",
]


@pytest.fixture(scope="module")
def lm(tiny_llama):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(tiny_llama).eval(), AutoTokenizer.from_pretrained(tiny_llama)


def alone(lm, prompt: str, n: int) -> list[int]:
    """Greedy tokens of `prompt` by transformers' own generate, on its own (no batch, no padding)."""
    model, tok = lm
    ids = tok(prompt).input_ids
    out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id)
    return out[0, len(ids):].tolist()   # up to and with the end-of-sequence token, as the engine gives it


def make(lm, **kw) -> Engine:
    model, tok = lm
    return Engine(model, tok, eos_token_ids=kw.pop("eos", []), context_length=kw.pop("context", 512), **kw)


def run(engine: Engine, arrivals: dict[int, list[tuple[str, list[int], SamplingParams]]], max_steps: int = 500):
    """Step until idle, adding requests at the step numbers of `arrivals`; tokens, texts and ends per request."""
    tokens: dict[str, list[int]] = {}
    texts: dict[str, str] = {}
    ends: dict[str, str] = {}
    step = 0
    while step == 0 or engine.busy or any(s >= step for s in arrivals):
        for rid, prompt, params in arrivals.get(step, []):
            engine.add(rid, prompt, params)
        for e in engine.step():
            tokens.setdefault(e.request_id, []).extend(e.token_ids)
            texts[e.request_id] = texts.get(e.request_id, "") + e.text
            if e.finish_reason:
                ends[e.request_id] = e.finish_reason
        step += 1
        assert step < max_steps
    return tokens, texts, ends


def greedy(n: int) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=0)


def test_greedy_in_a_busy_batch_is_token_for_token_what_it_is_alone(lm):
    """Staggered arrivals, prompts of different lengths (one prefilled in chunks), different max_tokens:
    each greedy completion equals transformers' generate of that prompt alone."""
    model, tok = lm
    lengths = [24, 9, 30, 17, 20]
    refs = [alone(lm, p, n) for p, n in zip(PROMPTS, lengths)]
    assert len({tuple(r[:5]) for r in refs}) == len(refs)   # the model's answers differ: the test can fail
    engine = make(lm, max_batch=8, prefill_budget=32, eos=[tok.eos_token_id])
    assert len(tok(PROMPTS[3]).input_ids) > 32             # prefilled over several steps
    arrivals = {0: [("0", tok(PROMPTS[0]).input_ids, greedy(lengths[0]))],
                2: [("1", tok(PROMPTS[1]).input_ids, greedy(lengths[1]))],
                5: [("2", tok(PROMPTS[2]).input_ids, greedy(lengths[2])),
                    ("3", tok(PROMPTS[3]).input_ids, greedy(lengths[3]))],
                11: [("4", tok(PROMPTS[4]).input_ids, greedy(lengths[4]))]}
    tokens, _, ends = run(engine, arrivals)
    for i in range(5):
        assert tokens[str(i)] == refs[i], f"request {i} differs in the batch"
        assert ends[str(i)] == (FINISH_STOP if refs[i][-1] == tok.eos_token_id else FINISH_LENGTH)
    assert engine.cache is None and not engine.rows      # everyone left; nothing held


def test_sequences_join_and_leave_between_steps(lm):
    """A short request that arrives while a long one decodes finishes first; the batch never waits for it."""
    _, tok = lm
    engine = make(lm, max_batch=4)
    engine.add("long", tok(PROMPTS[0]).input_ids, greedy(40))
    for _ in range(3):
        engine.step()
    engine.add("short", tok(PROMPTS[2]).input_ids, greedy(3))
    finished_at = {}
    step = 3
    while engine.busy:
        for e in engine.step():
            if e.finish_reason:
                finished_at[e.request_id] = step
        if len(engine.rows) == 2:
            assert len(engine.pads) == 2
        step += 1
    assert finished_at["short"] < finished_at["long"]
    assert finished_at["short"] <= 3 + 4                   # joined at once, 3 tokens, left


def test_a_long_prompt_is_prefilled_in_chunks_between_decoding_steps(lm):
    _, tok = lm
    engine = make(lm, max_batch=4, prefill_budget=16)
    engine.add("a", tok(PROMPTS[0]).input_ids, greedy(30))
    engine.step()
    engine.add("long", tok(PROMPTS[3]).input_ids, greedy(5))
    n_chunks = -(-len(tok(PROMPTS[3]).input_ids) // 16)
    for _ in range(n_chunks - 1):
        events = engine.step()
        assert [e.request_id for e in events] == ["a"]   # "a" kept decoding while the long prompt prefilled
    events = engine.step()
    assert {e.request_id for e in events} == {"a", "long"}


def test_cancel_frees_the_slot_at_the_next_step(lm):
    _, tok = lm
    engine = make(lm, max_batch=2)
    engine.add("x", tok(PROMPTS[0]).input_ids, greedy(50))
    engine.add("y", tok(PROMPTS[1]).input_ids, greedy(50))
    engine.step()
    engine.cancel("x")
    events = engine.step()
    assert any(e.request_id == "x" and e.finish_reason == FINISH_CANCELLED for e in events)
    assert [s.rid for s in engine.rows] == ["y"] and len(engine.pads) == 1
    engine.cancel("y")
    engine.step()
    assert not engine.busy and engine.cache is None


def test_waiting_beyond_the_batch_and_eos_and_context(lm):
    _, tok = lm
    first = alone(lm, PROMPTS[0], 12)
    k = next(k for k in range(3, 12) if first[k] not in first[:k])
    eos = first[k]                               # pretend a later token of a's answer is the end of sequence
    a, b = tok(PROMPTS[0]).input_ids, tok(PROMPTS[1]).input_ids
    context = len(b) + 4
    assert context > len(a) + k + 1
    engine = make(lm, max_batch=1, eos=[eos], context=context)
    engine.add("a", a, greedy(50))
    engine.add("b", b, greedy(50))
    early = [t for e in engine.step() for t in e.token_ids]
    assert engine.running == 1 and engine.queued == 1      # max_batch 1: b waits
    tokens, _, ends = run(engine, {})
    assert ends["a"] == FINISH_STOP and early + tokens["a"] == first[:k + 1]    # stopped at (and with) its eos
    assert ends["b"] == FINISH_LENGTH and len(tokens["b"]) == 4         # its context reached: prompt + 4


def test_stop_strings_cut_the_text_and_are_never_sent(lm):
    model, tok = lm
    ref = tok.decode(alone(lm, PROMPTS[1], 30), skip_special_tokens=True)
    stop = ref[8:11]
    assert stop and stop in ref
    engine = make(lm)
    _, texts, ends = run(engine, {0: [("s", tok(PROMPTS[1]).input_ids,
                                       SamplingParams(max_tokens=30, temperature=0, stop=(stop,)))]})
    assert texts["s"] == ref[:ref.index(stop)]
    assert ends["s"] == FINISH_STOP


def test_seeded_sampling_is_reproducible_in_any_batch(lm):
    _, tok = lm
    params = SamplingParams(max_tokens=20, temperature=0.9, top_p=0.9, seed=7)
    one, _, _ = run(make(lm), {0: [("s", tok(PROMPTS[0]).input_ids, params)]})
    busy, _, _ = run(make(lm), {0: [("o1", tok(PROMPTS[1]).input_ids, SamplingParams(max_tokens=25, seed=1))],
                                1: [("s", tok(PROMPTS[0]).input_ids, params)],
                                2: [("o2", tok(PROMPTS[4]).input_ids, greedy(10))]})
    assert busy["s"] == one["s"]
    other, _, _ = run(make(lm), {0: [("s", tok(PROMPTS[0]).input_ids,
                                      SamplingParams(max_tokens=20, temperature=0.9, top_p=0.9, seed=8))]})
    assert other["s"] != one["s"]


def test_frequency_penalty_stops_repetition(lm):
    _, tok = lm
    plain, _, _ = run(make(lm), {0: [("p", tok(PROMPTS[0]).input_ids, greedy(60))]})
    penalised, _, _ = run(make(lm), {0: [("p", tok(PROMPTS[0]).input_ids,
                                          SamplingParams(max_tokens=60, temperature=0, frequency_penalty=2.0))]})
    assert len(set(penalised["p"])) > len(set(plain["p"]))
