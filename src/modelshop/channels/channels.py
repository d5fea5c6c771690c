"""Channels, their tracking links and their monthly costs.

A channel's `code` is its referral code (`?ref=CODE`, lower case); a link adds the `utm_*`
values a campaign carries, so visits that arrive with those values but without `ref` still
count for the channel. Costs are set per channel, month, kind and currency (setting one again
replaces it, so importing the same CSV twice changes nothing).
"""

from __future__ import annotations

import csv
import io
import re
import secrets
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelshop.billing import audit
from modelshop.billing.money import check_currency, exact_minor, fmt
from modelshop.billing.periods import parse_period
from modelshop.channels.tables import KINDS, UTM, Channel, Cost, Link, Partner
from modelshop.db import Database, utcnow
from modelshop.errors import NotFound, ValidationError, did_you_mean

CODE_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{1,63}$")
COST_KINDS = ("ad_spend", "partner_fee", "other")
DIRECT = "direct"
CSV_COLUMNS = ("channel", "month", "kind", "amount", "currency", "note")


def channel_view(c: Channel, partner: Partner | None = None) -> dict:
    return {"id": c.id, "code": c.code, "name": c.name, "kind": c.kind, "partner_id": c.partner_id,
            "partner": partner.name if partner else None, "created_at": c.created_at.isoformat()}


def link_view(link: Link, channel: Channel) -> dict:
    return {"id": link.id, "channel_id": channel.id, "channel": channel.code,
            **{u: getattr(link, u) for u in UTM}, "landing": link.landing, "url": link_url(link, channel),
            "created_at": link.created_at.isoformat()}


def link_url(link: Link, channel: Channel) -> str:
    """The path and query a campaign hands out (prefix it with the storefront's address)."""
    query = {"ref": channel.code} if link.with_ref else {}
    query.update({u: getattr(link, u) for u in UTM if getattr(link, u)})
    return f"{link.landing}?{urlencode(query)}"


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValidationError(f'kind: "{kind}" is not one of {", ".join(KINDS)}{did_you_mean(kind, KINDS)}')
    return kind


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40]
    return slug if len(slug) >= 2 else f"ch-{secrets.token_hex(3)}"


def find_channel(s: Session, ref: str | int) -> Channel:
    """A channel by id or by code (case-insensitive)."""
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        row = s.get(Channel, int(ref))
    else:
        row = s.scalar(select(Channel).where(Channel.code == str(ref).strip().lower()))
    if row is None:
        codes = s.scalars(select(Channel.code)).all()
        raise NotFound(f'channel "{ref}" does not exist{did_you_mean(str(ref).lower(), codes)}; '
                       "list them with `modelshop channels list`")
    return row


def direct_channel(s: Session) -> Channel:
    """The channel of customers who came with no referral or campaign (made on first use)."""
    row = s.scalar(select(Channel).where(Channel.code == DIRECT))
    if row is None:
        row = Channel(code=DIRECT, name="Direct", kind="direct", created_at=utcnow())
        s.add(row)
        s.flush()
    return row


def create_channel(db: Database, name: str, kind: str, *, code: str | None = None,
                   partner_id: int | None = None, actor: str) -> dict:
    """A channel with its referral code: `code` if given, else one made from the name."""
    check_kind(kind)
    if not name or not name.strip():
        raise ValidationError("name: a channel needs a name")
    if code is not None:
        code = code.strip().lower()
        if not CODE_RE.match(code):
            raise ValidationError(f'code: "{code}" must be 2-64 lower-case letters, digits, "-" or "_"')
    with db.session() as s:
        if partner_id is not None and s.get(Partner, partner_id) is None:
            raise NotFound(f"partner {partner_id} does not exist; list them with `modelshop partners list`")
        taken = set(s.scalars(select(Channel.code)))
        if code is not None and code in taken:
            raise ValidationError(f'code: "{code}" is already the referral code of another channel')
        if code is None:
            base = _slug(name)
            code = next(c for c in [base, *(f"{base}-{i}" for i in range(2, 10_000))] if c not in taken)
        row = Channel(code=code, name=name.strip(), kind=kind, partner_id=partner_id, created_at=utcnow())
        s.add(row)
        s.flush()
        audit.log(s, actor, "channel.create", "channel", row.id, code=code, kind=kind, partner_id=partner_id)
        return channel_view(row, s.get(Partner, partner_id) if partner_id else None)


def list_channels(db: Database, *, partner_id: int | None = None) -> list[dict]:
    q = select(Channel, Partner).outerjoin(Partner, Channel.partner_id == Partner.id).order_by(Channel.id)
    if partner_id is not None:
        q = q.where(Channel.partner_id == partner_id)
    with db.session() as s:
        return [channel_view(c, p) for c, p in s.execute(q)]


def create_link(db: Database, channel: str | int, *, landing: str = "/store", with_ref: bool = True,
                actor: str, **utm: str | None) -> dict:
    """A tracking link: the channel's `ref` and/or `utm_*` values (at least one of them)."""
    unknown = set(utm) - set(UTM)
    if unknown:
        u = sorted(unknown)[0]
        raise ValidationError(f"unknown link field {u}{did_you_mean(u, UTM)}; fields: {', '.join(UTM)}")
    values = {u: (utm.get(u) or "").strip() or None for u in UTM}
    for u, v in values.items():
        if v is not None and len(v) > 200:
            raise ValidationError(f"{u}: at most 200 characters")
    if not with_ref and not any(values.values()):
        raise ValidationError("a link without ?ref= needs at least one utm_* value to be recognised by")
    if not landing.startswith("/") or landing.startswith("//"):
        raise ValidationError(f'landing: "{landing}" must be a path on the storefront, e.g. /store')
    with db.session() as s:
        ch = find_channel(s, channel)
        link = Link(channel_id=ch.id, landing=landing, with_ref=with_ref, created_at=utcnow(), **values)
        s.add(link)
        s.flush()
        audit.log(s, actor, "channel.link", "channel", ch.id, link_id=link.id, **values)
        return link_view(link, ch)


def list_links(db: Database, channel: str | int | None = None) -> list[dict]:
    q = select(Link, Channel).join(Channel, Link.channel_id == Channel.id).order_by(Link.id)
    with db.session() as s:
        if channel is not None:
            q = q.where(Channel.id == find_channel(s, channel).id)
        return [link_view(link, ch) for link, ch in s.execute(q)]


# --- costs ------------------------------------------------------------------------------------

def _month(month: str) -> str:
    _, _, kind = parse_period(month)
    if kind != "month":
        raise ValidationError(f'month: "{month}" must be YYYY-MM')
    return month


def _cost_kind(kind: str) -> str:
    if kind not in COST_KINDS:
        raise ValidationError(f'kind: "{kind}" is not one of {", ".join(COST_KINDS)}{did_you_mean(kind, COST_KINDS)}')
    return kind


def _upsert_cost(s: Session, channel: Channel, month: str, kind: str, currency: str, minor: int, note: str) -> Cost:
    row = s.scalar(select(Cost).where(Cost.channel_id == channel.id, Cost.month == month, Cost.kind == kind,
                                      Cost.currency == currency))
    if row is None:
        row = Cost(channel_id=channel.id, month=month, kind=kind, currency=currency)
        s.add(row)
    row.amount_minor, row.note, row.updated_at = minor, note, utcnow()
    return row


def cost_view(row: Cost, channel: Channel) -> dict:
    return {"channel": channel.code, "channel_id": channel.id, "month": row.month, "kind": row.kind,
            "currency": row.currency, "amount": fmt(row.amount_minor, row.currency), "note": row.note}


def set_cost(db: Database, channel: str | int, month: str, amount: object, *, kind: str = "ad_spend",
             currency: str = "USD", note: str = "", actor: str) -> dict:
    """Set what a channel cost in a month (replacing what was set for that kind and currency)."""
    month, kind, currency = _month(month), _cost_kind(kind), check_currency(currency)
    minor = exact_minor(amount, currency, "amount")
    with db.session() as s:
        ch = find_channel(s, channel)
        row = _upsert_cost(s, ch, month, kind, currency, minor, note[:300])
        s.flush()
        audit.log(s, actor, "channel.cost", "channel", ch.id, month=month, kind=kind, currency=currency,
                  amount=fmt(minor, currency))
        return cost_view(row, ch)


def import_costs_csv(db: Database, text: str, *, currency: str = "USD", actor: str) -> dict:
    """Set costs from CSV (`channel,month,kind,amount[,currency][,note]`): all rows or none."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))  # \r\n, \r or \n line ends
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as e:
        raise ValidationError(f"costs CSV: cannot read the header ({e})") from None
    missing = [c for c in ("channel", "month", "amount") if c not in header]
    if missing:
        raise ValidationError(f"costs CSV: missing column(s) {', '.join(missing)}; expected a header "
                              f"{','.join(CSV_COLUMNS)} (kind, currency and note optional)")
    extra = [h for h in header if h not in CSV_COLUMNS]
    if extra:
        raise ValidationError(f'costs CSV: unknown column "{extra[0]}"{did_you_mean(extra[0], CSV_COLUMNS)}')
    rows = []
    try:
        raw_rows = list(reader)
    except csv.Error as e:
        raise ValidationError(f"costs CSV: line {reader.line_num}: {e}") from None
    for n, raw in enumerate(raw_rows, start=2):
        r = {k.strip(): (v or "").strip() for k, v in raw.items() if k}
        if not any(r.values()):
            continue
        try:
            cur = check_currency(r.get("currency") or currency)
            rows.append((r["channel"], _month(r["month"]), _cost_kind(r.get("kind") or "ad_spend"), cur,
                         exact_minor(r["amount"], cur, "amount"), r.get("note", "")[:300]))
        except ValidationError as e:
            raise ValidationError(f"costs CSV line {n}: {e.message}") from None
    if not rows:
        raise ValidationError("costs CSV: no rows under the header")
    with db.session() as s:
        out = []
        for n, (ref, month, kind, cur, minor, note) in enumerate(rows, start=2):
            try:
                ch = find_channel(s, ref)
            except NotFound as e:
                raise NotFound(f"costs CSV line {n}: {e.message}") from None
            out.append(cost_view(_upsert_cost(s, ch, month, kind, cur, minor, note), ch))
        audit.log(s, actor, "channel.costs_import", "channel", "*", rows=len(out))
        return {"imported": len(out), "costs": out}


def list_costs(db: Database, *, channel: str | int | None = None, month: str | None = None) -> list[dict]:
    q = select(Cost, Channel).join(Channel, Cost.channel_id == Channel.id).order_by(Cost.month, Channel.code, Cost.kind)
    with db.session() as s:
        if channel is not None:
            q = q.where(Channel.id == find_channel(s, channel).id)
        if month:
            q = q.where(Cost.month == _month(month))
        return [cost_view(c, ch) for c, ch in s.execute(q)]

