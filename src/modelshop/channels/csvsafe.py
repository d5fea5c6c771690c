"""CSV for spreadsheets: every cell that a spreadsheet would run as a formula is written as text.

Reports and payout statements carry names that customers, partners and signups chose; opened in
Excel, LibreOffice or Google Sheets, a cell starting with `=`, `+`, `-` or `@` (or a tab or
carriage return before one) is evaluated, and `=HYPERLINK(...)` or a DDE call runs on the
operator's machine (CSV/formula injection, OWASP). Such a cell gets a leading `'`, which the
spreadsheet shows as text and hides.

A plain decimal number stays a number (`-12.50`, a clawback or a negative margin, must sum in the
sheet): a value matching `-?digits[.digits]` cannot be a formula. Anything else starting with a
trigger character (`-1+1`, `-2e3`, `+5`, `-`) is neutralised.

Use `writer` / `DictWriter` instead of the `csv` ones for every CSV that leaves the server.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def cell(value: object) -> object:
    """The value as a spreadsheet should see it: text that would start a formula gets a leading `'`."""
    text = value if isinstance(value, str) else None
    if text and text.startswith(TRIGGERS) and not NUMBER.fullmatch(text):
        return "'" + text
    return value


class _Writer:
    """A `csv.writer` whose rows are neutralised cell by cell."""

    def __init__(self, out, **kwargs) -> None:
        self._inner = csv.writer(out, **kwargs)

    def writerow(self, row: Iterable[object]):
        return self._inner.writerow([cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(out, **kwargs) -> _Writer:
    """`csv.writer(out, **kwargs)` for CSV that leaves the server."""
    return _Writer(out, **kwargs)


class DictWriter(csv.DictWriter):
    """`csv.DictWriter` whose values (the header too) are neutralised cell by cell."""

    def writerow(self, rowdict: Mapping[str, object]):
        return super().writerow({k: cell(v) for k, v in rowdict.items()})

    def writerows(self, rowdicts: Iterable[Mapping[str, object]]) -> None:
        for row in rowdicts:
            self.writerow(row)
