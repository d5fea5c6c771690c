"""Structured output: OpenAI's `response_format` enforced by constrained decoding (xgrammar).

    parse_response_format(value)          the request field, checked: None for plain text, else a
                                          normal form {"type": "json_object"} or {"type": "json_schema",
                                          "json_schema": {"name", "schema", "strict", ...}}
    compile_grammar(fmt, tokenizer, V)    → Grammar: the format compiled against one tokenizer (cached)
    Grammar.matcher()                     → Matcher: one per sequence, the grammar's state so far
    Matcher.mask_(logits)                 logits of tokens that cannot come next set to -inf, in place
    Matcher.accept(token_id)              moves the state on; raises for a token the mask forbade
    Matcher.is_terminated()               the JSON value is complete and nothing but a stop token may follow

Why a grammar and not "validate afterwards": a small model asked for JSON often writes almost-JSON;
masking each step's logits makes every completion parse, at the price of one bitmask per step.
xgrammar precomputes, per grammar state, which tokens are always or never allowed, so the per-step
work is small (well under a millisecond for a 49k vocabulary) and the mask is applied by its C++ CPU
kernel (on another device, by its plain-torch kernel on a copy of the bitmask there).

Choices worth knowing:
- The end-of-sequence ids (`stop_token_ids`, the model's eos) are allowed only once the JSON is
  complete; every other special token (<|im_start|>, padding ids beyond the tokenizer) never is —
  xgrammar alone would let a byte-level tokenizer's "<|im_start|>" into a JSON string, and the
  detokeniser, skipping special tokens, would then send text the grammar never saw.
- Tokens holding a raw control byte other than \\n and \\r are never allowed either: xgrammar 0.2.9's
  rule for a string with minLength/maxLength lets \\t or \\x07 into it, which json.loads refuses; the
  only cost is that whitespace is never a tab. A pattern or a known format beside minLength/maxLength
  is refused, as xgrammar would silently drop the lengths.
- Whitespace between JSON tokens is capped at `MAX_WHITESPACE` characters per gap, so a model that
  likes newlines cannot spend its whole budget on them; indented JSON still fits.
- json_schema is always enforced; xgrammar's strict mode (no properties the schema does not name) is
  on whatever `strict` says, since output with fewer properties still validates against the schema.
- `json_object` is any JSON object: the schema {"type": "object"} outside strict mode.
- Tokenizer metadata and compilers are kept per tokenizer (held weakly), compiled grammars in an LRU
  of `GRAMMAR_CACHE_SIZE` per tokenizer.
May import: errors (and torch, xgrammar).
"""

from __future__ import annotations

import json
import os
import re
import threading
import weakref
from collections import OrderedDict
from typing import Any

import torch
import xgrammar as xgr

from modelshop.errors import ModelError, ValidationError, did_you_mean

MAX_WHITESPACE = 32          # whitespace characters allowed in one gap between JSON tokens
GRAMMAR_CACHE_SIZE = 64      # compiled grammars kept per tokenizer (least recently used go first)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")   # OpenAI's rule for json_schema.name
TYPES = ("text", "json_object", "json_schema")
SCHEMA_FIELDS = ("name", "schema", "strict", "description")
DATA_KEYWORDS = ("enum", "const", "default", "examples")    # hold JSON values, not schemas
ENFORCED_FORMATS = ("email", "date", "time", "date-time", "duration", "ipv4", "ipv6", "hostname", "uuid",
                    "uri", "uri-reference", "uri-template", "json-pointer", "relative-json-pointer")

# xgrammar's C++ errors arrive as "[23:21:50] /project/cpp/json_schema_converter.cc:5082: message\n"
_XGR_PREFIX = re.compile(r"^\s*\[[^\]]*\]\s*\S+:\d+:\s*")


# --- the request field ---------------------------------------------------------------------------

def parse_response_format(value: object) -> dict | None:
    """The checked `response_format`: None for absent or {"type": "text"}, else its normal form."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError('response_format must be an object, e.g. {"type": "json_object"}')
    kind = value.get("type")
    if not isinstance(kind, str) or kind not in TYPES:
        hint = did_you_mean(kind, TYPES) if isinstance(kind, str) else ""
        raise ValidationError(f'response_format.type must be "text", "json_object" or "json_schema", '
                              f"got {json.dumps(kind)}{hint}")
    allowed = ("type", "json_schema") if kind == "json_schema" else ("type",)
    _no_unknown(value, allowed, "response_format")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": _parse_json_schema(value.get("json_schema"))}


def _parse_json_schema(spec: object) -> dict:
    where = "response_format.json_schema"
    if not isinstance(spec, dict):
        raise ValidationError(f'{where} must be an object with "name" and "schema"')
    _no_unknown(spec, SCHEMA_FIELDS, where)
    name = spec.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValidationError(f"{where}.name must be 1-64 letters, digits, _ or -, got {json.dumps(name)}")
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        found = "nothing" if schema is None else type(schema).__name__
        raise ValidationError(f"{where}.schema must be a JSON object (a JSON Schema), got {found}")
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise ValidationError(f"{where}.strict must be true or false, got {json.dumps(strict)}")
    description = spec.get("description")
    if description is not None and not isinstance(description, str):
        raise ValidationError(f"{where}.description must be a string")
    try:
        text = json.dumps(schema)
    except (TypeError, ValueError) as e:
        raise ValidationError(f"{where}.schema must be plain JSON: {e}") from None
    _lengths_enforceable(schema, "#")
    _schema_to_grammar(text)   # the schema's own mistakes surface here, before any tokenizer is involved
    out: dict[str, Any] = {"name": name, "schema": schema, "strict": bool(strict)}
    if description is not None:
        out["description"] = description
    return out


def _lengths_enforceable(node: object, at: str) -> None:
    """Refuse minLength/maxLength beside a pattern or a format xgrammar enforces: it would drop the lengths."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            _lengths_enforceable(item, f"{at}/{i}")
        return
    if not isinstance(node, dict):
        return
    lengths = [k for k in ("minLength", "maxLength") if isinstance(node.get(k), int)]
    beside = "pattern" if isinstance(node.get("pattern"), str) else (
        "format" if node.get("format") in ENFORCED_FORMATS else None)
    if lengths and beside:
        raise ValidationError(f"response_format.json_schema.schema at {at}: {beside} together with "
                              f"{' and '.join(lengths)} cannot be enforced; keep one of them")
    for key, value in node.items():
        if key not in DATA_KEYWORDS:
            _lengths_enforceable(value, f"{at}/{key}")


def _no_unknown(obj: dict, allowed: tuple[str, ...], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise ValidationError(f'{where} has an unknown field "{key}"{did_you_mean(str(key), allowed)}; '
                                  f"expected {', '.join(allowed)}")


def _xgrammar_message(e: Exception) -> str:
    lines = _XGR_PREFIX.sub("", str(e)).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _schema_to_grammar(schema_text: str) -> xgr.Grammar:
    try:
        return xgr.Grammar.from_json_schema(schema_text, strict_mode=True, max_whitespace_cnt=MAX_WHITESPACE)
    except (RuntimeError, ValueError) as e:
        raise ValidationError("response_format.json_schema.schema is not a JSON Schema we can enforce: "
                              f"{_xgrammar_message(e)}") from None


# --- compiling against a tokenizer ---------------------------------------------------------------

class Grammar:
    """A response format compiled for one tokenizer and logits width; hands out matchers."""

    def __init__(self, compiled: xgr.CompiledGrammar, vocab_size: int, stop_token_ids: list[int]) -> None:
        self.compiled = compiled
        self.vocab_size = vocab_size
        self.stop_token_ids = list(stop_token_ids)
        # every bit set except the stop tokens': AND-ed with a filled bitmask, nonzero iff a token other
        # than a stop token may come next (see Matcher.is_terminated)
        self.not_stop = torch.full(xgr.get_bitmask_shape(1, vocab_size), -1, dtype=torch.int32)
        for t in self.stop_token_ids:
            word = int(self.not_stop[0, t // 32]) & 0xFFFFFFFF & ~(1 << (t % 32))
            self.not_stop[0, t // 32] = word - (1 << 32) if word >= 1 << 31 else word   # back to signed

    def matcher(self) -> Matcher:
        return Matcher(self)


class Matcher:
    """One sequence's place in the grammar, with its own preallocated bitmask."""

    def __init__(self, grammar: Grammar) -> None:
        self._grammar = grammar
        self._state = xgr.GrammarMatcher(grammar.compiled)
        self._bitmask = xgr.allocate_token_bitmask(1, grammar.vocab_size)
        self._scratch = torch.empty_like(self._bitmask)
        self._filled = False        # the bitmask holds the mask for the current state
        self._partial = True        # that mask forbids something (xgrammar says when all is allowed)
        self._done: bool | None = None

    def mask_(self, logits: torch.Tensor) -> None:
        """Set the logits of tokens the grammar forbids next to -inf, in place (1-D, [vocab_size])."""
        v = self._grammar.vocab_size
        if logits.dim() != 1 or logits.shape[0] != v:
            raise ModelError(f"constrained decoding expects logits of shape [{v}], got {list(logits.shape)}")
        self._fill()
        if not self._partial:
            return
        if logits.device.type == "cpu":
            xgr.apply_token_bitmask_inplace(logits, self._bitmask[0], vocab_size=v)
        else:
            xgr.apply_token_bitmask_inplace(logits, self._bitmask[0].to(logits.device, non_blocking=True),
                                            vocab_size=v, backend="torch_native")

    def accept(self, token_id: int) -> None:
        """Move on by one token; a token the mask forbade (or any after the end) raises ModelError."""
        if not self._state.accept_token(int(token_id)):
            raise ModelError(f"token {token_id} is not allowed by the response_format grammar at this point")
        self._filled = False
        self._done = None

    def is_terminated(self) -> bool:
        """Whether the JSON value is complete: a stop token was accepted, or nothing else may follow."""
        if self._done is None:
            self._done = self._state.is_terminated() or (self._state.is_completed() and not self._more())
        return self._done

    def _more(self) -> bool:
        """Whether a token other than a stop token may come next (e.g. another digit after '12')."""
        self._fill()
        torch.bitwise_and(self._bitmask, self._grammar.not_stop, out=self._scratch)
        return bool(self._scratch.any())

    def _fill(self) -> None:
        if not self._filled:
            self._partial = self._state.fill_next_token_bitmask(self._bitmask)
            self._filled = True


class _Vocabulary:
    """One tokenizer's metadata for xgrammar at one logits width and stop set, its compiler and grammars."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: list[int]) -> None:
        self.lock = threading.Lock()
        self.stop_token_ids = stop_token_ids
        self.vocab_size = vocab_size
        self.info = _tokenizer_info(tokenizer, vocab_size, stop_token_ids)
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=min(8, os.cpu_count() or 1),
                                            cache_enabled=False)
        self.grammars: OrderedDict[str, Grammar] = OrderedDict()

    def cached(self, key: str) -> Grammar | None:
        with self.lock:
            grammar = self.grammars.get(key)
            if grammar is not None:
                self.grammars.move_to_end(key)
            return grammar

    def grammar(self, key: str, response_format: dict) -> Grammar:
        """The cached grammar under `key`, or `response_format` (checked) compiled and cached."""
        with self.lock:
            if key in self.grammars:
                self.grammars.move_to_end(key)
                return self.grammars[key]
            grammar = Grammar(self._compile(response_format), self.vocab_size, self.stop_token_ids)
            self.grammars[key] = grammar
            while len(self.grammars) > GRAMMAR_CACHE_SIZE:
                self.grammars.popitem(last=False)
            return grammar

    def _compile(self, fmt: dict) -> xgr.CompiledGrammar:
        if fmt["type"] == "json_object":
            return self.compiler.compile_json_schema({"type": "object"}, strict_mode=False,
                                                     max_whitespace_cnt=MAX_WHITESPACE)
        try:
            return self.compiler.compile_json_schema(json.dumps(fmt["json_schema"]["schema"]), strict_mode=True,
                                                     max_whitespace_cnt=MAX_WHITESPACE)
        except (RuntimeError, ValueError) as e:
            raise ValidationError("response_format.json_schema.schema is not a JSON Schema we can enforce: "
                                  f"{_xgrammar_message(e)}") from None


def _tokenizer_info(tokenizer: Any, vocab_size: int, stop_token_ids: list[int]) -> xgr.TokenizerInfo:
    """xgrammar's view of the vocabulary, less the tokens no JSON output may hold (see _unusable)."""
    try:
        detected = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size,
                                                      stop_token_ids=stop_token_ids)
    except ValueError as e:
        raise ModelError(f"constrained decoding does not support this tokenizer: {e}") from None
    unusable = _unusable(tokenizer, detected.decoded_vocab, stop_token_ids)
    encoded = [""] * vocab_size      # an empty piece is what xgrammar treats as never allowed
    for piece, i in tokenizer.get_vocab().items():
        if i < vocab_size and i not in unusable:
            encoded[i] = piece
    return xgr.TokenizerInfo.from_vocab_and_metadata(encoded, detected.dump_metadata())


def _unusable(tokenizer: Any, decoded: list[bytes], stop_token_ids: list[int]) -> set[int]:
    """Special tokens other than the stops, and tokens holding a raw control byte other than \\n and \\r.

    xgrammar reads a byte-level "<|im_start|>" as plain text a JSON string may hold, and its rule for a
    string with minLength/maxLength lets raw control bytes (\\t, \\x07) through, which json.loads
    refuses. Outside strings JSON allows only \\t, \\n, \\r, \\x20 as whitespace, so dropping these
    tokens costs nothing but tab indentation."""
    special = set(getattr(tokenizer, "all_special_ids", []))
    special |= {i for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if t.special}
    control = {i for i, piece in enumerate(decoded) if _CONTROL.search(piece)}
    return (special | control) - set(stop_token_ids)


_CONTROL = re.compile(rb"[\x00-\x09\x0b\x0c\x0e-\x1f]")


class _Vocabularies:
    """_Vocabulary per live tokenizer (weakly held, so a model unloaded takes its grammars with it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_tokenizer: weakref.WeakKeyDictionary[Any, dict[tuple, _Vocabulary]] = weakref.WeakKeyDictionary()

    def get(self, tokenizer: Any, vocab_size: int, stop_token_ids: list[int]) -> _Vocabulary:
        key = (vocab_size, tuple(stop_token_ids))
        with self._lock:
            per = self._by_tokenizer.setdefault(tokenizer, {})
            if key not in per:
                per[key] = _Vocabulary(tokenizer, vocab_size, stop_token_ids)
            return per[key]


_VOCABULARIES = _Vocabularies()


def compile_grammar(response_format: dict, tokenizer: Any, vocab_size: int, *,
                    stop_token_ids: list[int] | None = None) -> Grammar:
    """`response_format` compiled for `tokenizer` with `vocab_size` logits (cached per tokenizer and format).

    `stop_token_ids` are the model's end-of-sequence ids (default: the tokenizer's eos), allowed only once
    the JSON is complete. A format that is not valid, or a schema xgrammar cannot enforce, is a
    ValidationError."""
    stops = sorted({int(t) for t in stop_token_ids}) if stop_token_ids else _eos(tokenizer)
    if any(not 0 <= t < vocab_size for t in stops):
        raise ModelError(f"stop token ids {stops} lie outside the vocabulary of {vocab_size}")
    vocabulary = _VOCABULARIES.get(tokenizer, vocab_size, stops)
    key = _key(response_format)
    grammar = vocabulary.cached(key) if key else None
    if grammar is not None:
        return grammar
    fmt = parse_response_format(response_format)
    if fmt is None:
        raise ValidationError('response_format {"type": "text"} needs no grammar: decode without one')
    return vocabulary.grammar(key or json.dumps(fmt, sort_keys=True), fmt)


def _key(response_format: object) -> str | None:
    try:
        return json.dumps(response_format, sort_keys=True)
    except (TypeError, ValueError):
        return None


def _eos(tokenizer: Any) -> list[int]:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ModelError("the tokenizer has no eos token: pass stop_token_ids to compile_grammar")
    return [int(eos)]
