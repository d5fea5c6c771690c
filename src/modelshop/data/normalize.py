"""Text normalisation and the keys used to compare texts.

`normalize_text` is what cleaning applies (NFKC, invisible characters removed, whitespace runs
collapsed to one space, trimmed). `match_key` is coarser and only used for comparing: it also
case-folds and keeps letters and digits only, so "Hello, World!" and "hello world" match.
"""

from __future__ import annotations

import re
import unicodedata

# Zero-width spaces/joiners, BOM, soft hyphen and word joiner survive NFKC and hide duplicates.
_INVISIBLE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def normalize_text(text: str) -> str:
    """NFKC, drop invisible and control characters, collapse whitespace to single spaces, trim."""
    text = unicodedata.normalize("NFKC", text)
    text = _CONTROL.sub(" ", _INVISIBLE.sub("", text))
    return " ".join(text.split())


_NOT_ALNUM = re.compile(r"[\W_]+")


def match_key(text: str) -> str:
    """Case-folded letters and digits of the normalised text: punctuation and spacing ignored."""
    return fold(normalize_text(text))


def fold(normalized: str) -> str:
    """`match_key` of a text that is already normalised."""
    return _NOT_ALNUM.sub("", normalized.casefold())
