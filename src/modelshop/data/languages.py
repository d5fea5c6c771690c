"""Which language each text is written in, and how well a base model's tokenizer covers each one.

    detect_languages(texts)              an ISO 639-1 code per text ("und" where nothing can tell)
    language_summary(codes)              counts, shares and names of the languages, as the profile holds them
    tokenizer_coverage(texts, codes, t)  per language: [UNK] share and pieces per character under `t`
    coverage_warnings(coverage, base)    one sentence per poorly covered language, with what to do

The detector is lingua (`lingua-language-detector`, Apache-2.0): its n-gram models ship inside
the wheel, so it works offline, and unlike script shares it tells English from French or
Russian from Ukrainian. Script shares would be enough to warn about Chinese under an English
tokenizer, but not to report figures per language of two Latin-script languages. Customer
messages are short ("agent", "Terrible. Just terrible."), where any detector hesitates between
neighbours; `detect_languages` then prefers a language the rest of the data is written in.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Any

UNDETERMINED = "und"  # ISO 639-2 for "undetermined": no letters, or no candidate language fits

# The languages the detector chooses from (ISO 639-1). Fewer candidates mean fewer confusions on short
# texts and less memory: lingua loads the models of every candidate that shares a text's script, and
# the twelve Latin-script ones below take about 2 s and 300 MB on first use. A text in a language not
# listed is reported as the closest listed one; add its code here when your customers write in it.
LANGUAGES = ("en", "es", "fr", "de", "pt", "it", "nl", "pl", "tr", "vi", "id", "sv",
             "zh", "ja", "ko", "ru", "uk", "ar", "fa", "he", "hi", "th", "el")

# Short texts: when the detector's best guess has less than UNSURE confidence and a language that
# holds at least MAIN_SHARE of the data's texts scores at least CLOSE times as much, the text is taken
# to be in that language. Of the demo's 288 English messages lingua alone calls 5 one- to five-word
# ones French, Italian, Portuguese or Dutch; this turns 4 of them ("agent", "order 60012 status?")
# back into English ("operator", 0.32 Italian, stays) and changes none of its confident calls: a
# sentence really in French scores far above 0.3 for French.
UNSURE = 0.3
CLOSE = 0.5
MAIN_SHARE = 0.1

# What the aliases of `--base-model` are, for the warnings (the data layer does not load models).
_ABOUT = {"minilm": "an English model"}

# Coverage thresholds. [UNK] erases the piece outright: above 5% (one piece in twenty) a short message
# often loses the very word that carries its label; a tokenizer made for the language stays well under
# 1% (minilm on English messages: 0.0%; on Chinese ones: 68%).
UNK_WARN = 0.05
# Pieces per (non-space) character: an English WordPiece vocabulary reads English at about 0.3 and
# French or German at about 0.4; above 0.6 most words are spelt out letter by letter (Russian or Arabic
# under minilm: about 1.0), so the model sees letters, not words. Chinese and Japanese are read a
# character at a time even by tokenizers made for them (bert-base-chinese: about 1.0); for them only
# more pieces than characters (a byte-level vocabulary splitting each character into bytes) is poor.
PIECES_PER_CHAR_WARN = 0.6
PIECES_PER_CHAR_WARN_CJK = 1.0
_CHARACTER_SCRIPTS = ("zh", "ja")
# Detection reads a text's first 300 characters: lingua is as good as it gets well before that (a
# sentence or two), and the rest of a long text only costs time (news articles of 2,000+ characters:
# ten times as long to detect in full).
DETECT_CHARS = 300
_BATCH = 256


@lru_cache(maxsize=1)
def _detector() -> Any:
    """lingua's detector over LANGUAGES, built once per process (its models load lazily, per script)."""
    from lingua import IsoCode639_1, Language, LanguageDetectorBuilder

    langs = [Language.from_iso_code_639_1(IsoCode639_1.from_str(code)) for code in LANGUAGES]
    return LanguageDetectorBuilder.from_languages(*langs).build()


def detect_languages(texts: list[str]) -> list[str]:
    """The ISO 639-1 code of each text's language, or "und" where no language can be told."""
    if not texts:
        return []
    ranked = _detector().compute_language_confidence_values_in_parallel([t[:DETECT_CHARS] for t in texts])
    first = [_code(values[0].language) if values and values[0].value > 0 else UNDETERMINED for values in ranked]
    told = [c for c in first if c != UNDETERMINED]
    main = {c for c, n in Counter(told).items() if n >= MAIN_SHARE * len(told)}
    out = []
    for code, values in zip(first, ranked, strict=True):
        if code != UNDETERMINED and values[0].value < UNSURE:
            best = values[0].value
            alt = next((v for v in values[1:] if _code(v.language) in main), None)
            if alt is not None and alt.value >= CLOSE * best:
                code = _code(alt.language)
        out.append(code)
    return out


def _code(language: Any) -> str:
    return language.iso_code_639_1.name.lower()


def language_name(code: str) -> str:
    """"zh" → "Chinese"; "und" → "undetermined"."""
    if code == UNDETERMINED:
        return "undetermined"
    from lingua import IsoCode639_1, Language

    try:
        return Language.from_iso_code_639_1(IsoCode639_1.from_str(code)).name.title()
    except ValueError:
        return code


def detector_name() -> str:
    from importlib.metadata import version

    return f"lingua {version('lingua-language-detector')} ({len(LANGUAGES)} candidate languages)"


def language_summary(codes: list[str]) -> dict:
    """Counts, shares and names of the languages (most texts first), and the code of each text."""
    counts = dict(sorted(Counter(codes).items(), key=lambda kv: (-kv[1], kv[0])))
    total = len(codes) or 1
    return {"detector": detector_name(), "counts": counts,
            "shares": {c: round(n / total, 4) for c, n in counts.items()},
            "names": {c: language_name(c) for c in counts}, "per_text": list(codes)}


def _unk_id(tokenizer: Any) -> int | None:
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None and hasattr(tokenizer, "token_to_id"):  # a bare `tokenizers.Tokenizer`
        name = getattr(getattr(tokenizer, "model", None), "unk_token", None)
        unk = tokenizer.token_to_id(name) if name else None
    return unk


def _pieces(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """Token ids of each text without special tokens: what the model reads of the text itself."""
    out: list[list[int]] = []
    for i in range(0, len(texts), _BATCH):
        chunk = texts[i:i + _BATCH]
        if hasattr(tokenizer, "encode_batch"):
            out.extend(enc.ids for enc in tokenizer.encode_batch(chunk, add_special_tokens=False))
        else:
            out.extend(tokenizer(chunk, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])
    return out


def tokenizer_coverage(texts: list[str], codes: list[str], tokenizer: Any) -> dict[str, dict]:
    """Per language (most texts first): texts, pieces, [UNK] pieces, their share, pieces per character."""
    unk = _unk_id(tokenizer)
    by_lang: dict[str, list[str]] = {}
    for text, code in zip(texts, codes, strict=True):
        if code != UNDETERMINED:
            by_lang.setdefault(code, []).append(text)
    out = {}
    for code, group in sorted(by_lang.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        ids = _pieces(tokenizer, group)
        pieces = sum(len(row) for row in ids)
        unknown = sum(row.count(unk) for row in ids) if unk is not None else 0
        chars = sum(len("".join(t.split())) for t in group)
        per_char = pieces / chars if chars else 0.0
        limit = PIECES_PER_CHAR_WARN_CJK if code in _CHARACTER_SCRIPTS else PIECES_PER_CHAR_WARN
        unk_rate = unknown / pieces if pieces else 0.0
        out[code] = {"texts": len(group), "pieces": pieces, "unk": unknown, "unk_rate": round(unk_rate, 4),
                     "pieces_per_char": round(per_char, 3),
                     "poor": unk_rate > UNK_WARN or per_char > limit}
    return out


def coverage_warnings(coverage: dict[str, dict], base_model: str) -> list[str]:
    """One warning per poorly covered language: how badly, and which model to use instead."""
    about = f"{base_model} ({_ABOUT[base_model]})" if base_model in _ABOUT else base_model
    out = []
    for code, c in coverage.items():
        if not c["poor"]:
            continue
        name = language_name(code)
        if c["unk_rate"] > UNK_WARN:
            what = f"{c['unk_rate']:.0%} of pieces are [UNK] for {about}"
        else:
            what = (f"{c['pieces_per_char']:.2f} pieces per character for {about}, so most words are "
                    "read as single letters or bytes")
        out.append(f"{code} ({name}, {c['texts']} texts): {what}: expect poor results; use a {name} or "
                   "multilingual checkpoint, or tfidf")
    return out
