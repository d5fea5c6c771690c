"""Finding and redacting personal data in text: e-mails, phone numbers, Chinese ID cards, card numbers.

Kinds and their replacement tokens:

    email    [EMAIL]    name@domain.tld
    id_card  [ID_CARD]  Chinese 18-digit resident ID, check digit verified (ISO 7064 MOD 11-2)
    phone    [PHONE]    found by `phonenumbers` (Google's libphonenumber metadata): any country's
                        number written with its code (+44 20 7946 0958, 0086-150-1234-5678), and
                        numbers without one read as Chinese (13812345678, 010-6552-9988) or North
                        American ((202) 456-1111); see `_phone_ok` for what is kept
    card     [CARD]     payment card, 13–19 digits with optional spaces/dashes, Luhn verified

Detectors run in that order on the text left by the previous one, so a span is counted once
(an e-mail made of a phone number is an e-mail; an ID number is not also a card or phone). The regex
patterns are anchored with a look-behind so the regex engine starts at most once per run of
characters: linear time, a 1 MB text is fine. Digits are ASCII only ([0-9]), and boundaries are "not
a digit" rather than \\b because Chinese characters count as word characters.

Phones were a hand-written regex (Chinese mobiles, US shapes, "+CC" runs) until measured against
`phonenumbers` (benchmarks/pii_eval.py, figures in BENCHMARKS.md): the library finds national
formats the regex did not know and rejects digit runs no numbering plan has.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator

import phonenumbers
from phonenumbers import Leniency, PhoneNumberMatcher

_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@"
                    r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?![A-Za-z0-9])")
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])[1-9][0-9]{5}(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])"
                      r"(?:0[1-9]|[12][0-9]|3[01])[0-9]{3}[0-9Xx](?![0-9A-Za-z])")
_CARD = re.compile(r"(?<![0-9+])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")

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


_PHONE_REGION = "CN"  # how the matcher reads a number written without a country code
_INTERNATIONAL = re.compile(r"\(?(?:\+|00(?=[1-9]))")
# North American shape, grouped 3-3-4 with separators: a bare run of ten digits is more often an id
_NANP = re.compile(r"(?:\+?1[ .-]?)?(?:\([2-9][0-9]{2}\)[ .-]?|[2-9][0-9]{2}[ .-])[0-9]{3}[ .-][0-9]{4}")
_NOT_DIGIT = re.compile(r"[^0-9]")


def _phone_ok(match: phonenumbers.PhoneNumberMatch) -> bool:
    """Whether a number-shaped span the matcher proposed is a phone number:
    - written with a country code (+44 ..., 0086 ...): of a length that country's plan allows (also
      ranges not yet assigned, and the fictional +1 555 numbers);
    - without one, read as Chinese: a valid number written with the national prefix its type needs
      (landlines 010-..., 0755-...; mobiles none), as the library's VALID leniency requires — without
      that check "2023-000123" and a tennis score "(7-5) 4-6 6-3" pass as landlines;
    - or in the North American 3-3-4 shape with separators ((202) 456-1111, 555-123-4567)."""
    number, raw = match.number, match.raw_string
    if _INTERNATIONAL.match(raw):
        return phonenumbers.is_possible_number(number)
    # +86 has one region: asking for it skips the library's region lookup, a third of the cost
    if number.country_code == 86 and phonenumbers.is_valid_number_for_region(number, "CN"):
        national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        if _NOT_DIGIT.sub("", national) == _NOT_DIGIT.sub("", raw):
            return True
    if _NANP.fullmatch(raw):
        try:
            return phonenumbers.is_possible_number(phonenumbers.parse(raw, "US"))
        except phonenumbers.NumberParseException:
            return False
    return False


# Slash dates and clock times, blanked (same length, so offsets hold) before the matcher runs: it
# reads "15/01/2024 13812345678" as one date-shaped candidate and drops the phone with it, and
# "10:30 (202) 456-1111" as "30 (202) 456-1111".
_DATE_OR_TIME = re.compile(r"(?<![0-9])(?:[0-9]{1,4}/[0-9]{1,2}/[0-9]{1,4}|[0-9]{1,2}:[0-9]{2}(?::[0-9]{2})?)(?![0-9])")


def _phone_spans(text: str) -> Iterator[tuple[int, int]]:
    # POSSIBLE leniency proposes every number-shaped span; `_phone_ok` then decides. max_tries: the
    # default 65 535 candidates would silently stop a long text part-way.
    masked = _DATE_OR_TIME.sub(lambda m: "_" * len(m.group()), text)
    for match in PhoneNumberMatcher(masked, _PHONE_REGION, leniency=Leniency.POSSIBLE, max_tries=sys.maxsize):
        if _phone_ok(match):
            yield match.start, match.end


def _regex_spans(pattern: re.Pattern[str],
                 valid: Callable[[str], bool] | None) -> Callable[[str], Iterator[tuple[int, int]]]:
    def spans(text: str) -> Iterator[tuple[int, int]]:
        for match in pattern.finditer(text):
            if valid is None or valid(match.group()):
                yield match.span()
    return spans


_DETECTORS: tuple[tuple[str, str, Callable[[str], Iterator[tuple[int, int]]]], ...] = (
    ("email", "[EMAIL]", _regex_spans(_EMAIL, None)),
    ("id_card", "[ID_CARD]", _regex_spans(_ID_CARD, id_card_valid)),
    ("phone", "[PHONE]", _phone_spans),
    ("card", "[CARD]", _regex_spans(_CARD, _card_ok)),
)

KINDS = tuple(kind for kind, *_ in _DETECTORS)


# Every digit-based kind holds 7+ digits separated by at most two of " ().-" characters. This
# pattern starts with a character class, which the regex engine scans for fast, so most texts
# skip the slower detectors.
_DIGITS = re.compile(r"[0-9](?:[ ().-]{0,2}[0-9]){6}")


def _scan(text: str) -> tuple[str, dict[str, int]]:
    counts: dict[str, int] = {}
    has_at, has_digits = "@" in text, _DIGITS.search(text) is not None
    for kind, token, spans in _DETECTORS:
        if not (has_at if kind == "email" else has_digits):
            continue
        parts, last = [], 0
        for start, end in spans(text):
            parts += [text[last:start], token]
            last = end
        if parts:
            counts[kind] = len(parts) // 2
            text = "".join(parts) + text[last:]
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
