"""Turning a file's bytes into text: UTF-8 (with or without BOM), UTF-16 with BOM, and GB18030/GBK.

Chinese users often save CSV from Excel in GBK/GB18030. We decode such files instead of failing,
and say so in a note, but only when the decoded text looks like Chinese: at least 80% of its
non-ASCII characters must be common hanzi or CJK punctuation (GB2312 lead bytes 0xA1–0xD7).
Latin-1 or Windows-1252 text also "decodes" as GB18030, into rare characters, so it fails that
test and the caller gets a one-line error naming the byte offset and line of the first byte that
is not UTF-8.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from modelshop.errors import ValidationError

_FIX = "re-save it as UTF-8 (e.g. Excel: Save As → 'CSV UTF-8')"


def read_text(path: Path) -> tuple[str, str | None]:
    """The file's text and a note when it was not plain UTF-8 (None otherwise)."""
    return decode_bytes(path.read_bytes(), path.name)


def decode_bytes(raw: bytes, name: str) -> tuple[str, str | None]:
    """Decode `raw` (named `name` in messages); see the module docstring for the rules."""
    start = 0
    if raw.startswith(codecs.BOM_UTF8):
        start = len(codecs.BOM_UTF8)
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16"), f"{name} was decoded as UTF-16; {_FIX}"
        except UnicodeDecodeError as exc:
            raise ValidationError(
                f"{name} starts with a UTF-16 mark but is not valid UTF-16 at byte offset "
                f"{exc.start}; {_FIX}"
            ) from None
    body = raw[start:]
    try:
        return body.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        bad = exc.start
    chinese = _as_chinese(body)
    if chinese is not None:
        return chinese, f"{name} is not UTF-8; it was decoded as GB18030 (GBK) Chinese; {_FIX}"
    line = body.count(b"\n", 0, bad) + 1
    raise ValidationError(
        f"{name} is not UTF-8: byte 0x{body[bad]:02x} at byte offset {bad + start} (line {line}) "
        f"is invalid; {_FIX}"
    )


def _as_chinese(raw: bytes) -> str | None:
    """The GB18030 decoding of `raw` when it reads as Chinese, else None."""
    try:
        text = raw.decode("gb18030")
    except UnicodeDecodeError:
        return None
    wide = [ch for ch in text if ord(ch) > 127]
    if not wide:
        return None
    common = 0
    for ch in wide:
        encoded = ch.encode("gb18030")
        if len(encoded) == 2 and 0xA1 <= encoded[0] <= 0xD7:
            common += 1
    return text if common >= 0.8 * len(wide) else None
