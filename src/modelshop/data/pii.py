"""Finding and redacting personal data in text: e-mails, phone numbers, Chinese ID cards, card numbers.

Kinds and their replacement tokens:

    email    [EMAIL]    name@domain.tld
    id_card  [ID_CARD]  Chinese 18-digit resident ID, check digit verified (ISO 7064 MOD 11-2)
    phone    [PHONE]    Chinese mobile 1[3-9]xxxxxxxxx (optional +86/0086, 3-4-4 grouping),
                        US style (555) 123-4567 / 555-123-4567 / +1 ..., international +CC ...
                        (7–15 digits); bare digit runs are not phones except Chinese mobiles
    card     [CARD]     payment card, 13–19 digits with optional spaces/dashes, Luhn verified

Detectors run in that order on the text left by the previous one, so a span is counted once
(an e-mail made of a phone number is an e-mail; an ID number is not also a card or phone). Every pattern
is anchored with a look-behind so the regex engine starts at most once per run of characters:
linear time, a 1 MB text is fine. Digits are ASCII only ([0-9]), and boundaries are "not a digit"
rather than \\b because Chinese characters count as word characters.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9])")
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx](?![0-9A-Za-z])")
_CARD = re.compile(r"(?<![0-9+])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")
_PHONE = re.compile(
    r"(?<![0-9+])(?:"
    r"(?:(?:\+|00)86[ -]?)?1[3-9][0-9](?:[0-9]{8}|[ -][0-9]{4}[ -][0-9]{4})"  # Chinese mobile
    r"|(?:\+?1[ .-]?)?\([2-9][0-9]{2}\)[ .-]?[0-9]{3}[ .-][0-9]{4}"            # (555) 123-4567
    r"|(?:\+?1[ .-])?[2-9][0-9]{2}[.-][0-9]{3}[.-][0-9]{4}"                   # 555-123-4567
    r"|\+[1-9][0-9]{0,2}(?:[ .-]?\(?[0-9]{1,4}\)?){2,5}"                       # +44 20 7946 0958
    r")(?![0-9])"
)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_card_valid(number: str) -> bool:
    """True when an 18-character Chinese ID number's last character is its MOD 11-2 check digit."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS))
    return _ID_CHECK[total % 11] == number[17].upper()


def luhn_valid(digits: str) -> bool:
    """True when a string of digits passes the Luhn check used by payment cards."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(span: str) -> bool:
    digits = span.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_valid(digits)


def _phone_ok(span: str) -> bool:
    return 7 <= sum(ch.isdigit() for ch in span) <= 15


_DETECTORS: tuple[tuple[str, str, re.Pattern[str], Callable[[str], bool] | None], ...] = (
    ("email", "[EMAIL]", _EMAIL, None),
    ("id_card", "[ID_CARD]", _ID_CARD, id_card_valid),
    ("phone", "[PHONE]", _PHONE, _phone_ok),
    ("card", "[CARD]", _CARD, _card_ok),
)

KINDS = tuple(kind for kind, *_ in _DETECTORS)


# Every digit-based kind holds 7+ digits separated by at most two of " ().-" characters. This
# pattern starts with a character class, which the regex engine scans for fast, so most texts
# skip the slower detectors.
_DIGITS = re.compile(r"[0-9](?:[ ().-]{0,2}[0-9]){6}")


def _scan(text: str) -> tuple[str, dict[str, int]]:
    counts: dict[str, int] = {}
    has_at, has_digits = "@" in text, _DIGITS.search(text) is not None
    for kind, token, pattern, valid in _DETECTORS:
        if not (has_at if kind == "email" else has_digits):
            continue
        found = 0

        def replace(match: re.Match[str]) -> str:
            nonlocal found
            if valid is not None and not valid(match.group()):
                return match.group()
            found += 1
            return token

        text = pattern.sub(replace, text)
        if found:
            counts[kind] = found
    return text, counts


def find_pii(text: str) -> dict[str, int]:
    """How many of each kind of personal data `text` holds; kinds with none are left out."""
    return _scan(text)[1]


def redact_pii(text: str) -> str:
    """`text` with each piece of personal data replaced by its token ([EMAIL], [PHONE] ...)."""
    return _scan(text)[0]


def redact_with_counts(text: str) -> tuple[str, dict[str, int]]:
    """Both at once: the redacted text and the counts `find_pii` would give."""
    return _scan(text)
