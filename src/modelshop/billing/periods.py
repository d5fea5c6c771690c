"""Billing periods: "YYYY-MM" (monthly plans) and "YYYY" (yearly plans), as half-open UTC ranges."""

from __future__ import annotations

import datetime as dt
import re

from modelshop.errors import ValidationError

PERIOD_RE = re.compile(r"^(\d{4})(?:-(\d{2}))?$")


def parse_period(period: str) -> tuple[dt.datetime, dt.datetime, str]:
    """"2026-07" → (2026-07-01T00:00Z, 2026-08-01T00:00Z, "month"); "2026" → the year, "year"."""
    m = PERIOD_RE.match(period or "")
    if not m or (m.group(2) and not 1 <= int(m.group(2)) <= 12):
        raise ValidationError(f'period: "{period}" must be YYYY-MM (monthly plans) or YYYY (yearly plans)')
    year = int(m.group(1))
    if m.group(2) is None:
        return dt.datetime(year, 1, 1, tzinfo=dt.UTC), dt.datetime(year + 1, 1, 1, tzinfo=dt.UTC), "year"
    month = int(m.group(2))
    start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
    end = dt.datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=dt.UTC)
    return start, end, "month"


def period_of(moment: dt.datetime, interval: str) -> str:
    """The period label of `moment` for a plan billed per `interval`."""
    moment = moment.astimezone(dt.UTC)
    return f"{moment.year:04d}" if interval == "year" else f"{moment.year:04d}-{moment.month:02d}"


def months_of(period: str) -> list[str]:
    """The calendar months ("YYYY-MM") a period covers."""
    start, _end, kind = parse_period(period)
    if kind == "month":
        return [period]
    return [f"{start.year:04d}-{m:02d}" for m in range(1, 13)]
