"""Visits, touches and the binding of a customer to a channel.

A visitor is a random first-party id in a storefront cookie; nothing else about the person is
kept. A visitor's first view of a page is a `Visit` (one row per visitor and page, however often
it reloads); a view that arrives with `?ref=CODE` or a link's `utm_*` values is also a `Touch` of
that channel (a repeat of the visitor's latest touch on the same day is not written again).
At signup the customer is bound to the channel of the first (or, by setting, the last) touch of
its visitor inside the attribution window, else to the channel named by the signup request
itself, else to the `direct` channel. The binding is written once; only `rebind`, an explicit
admin action recorded in the audit log, moves it.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelshop.billing import accounts, audit, keys
from modelshop.billing.tables import Customer
from modelshop.channels.channels import DIRECT, direct_channel, find_channel
from modelshop.channels.commission_guards import REBIND
from modelshop.channels.tables import UTM, Attribution, Channel, Link, Touch, Visit
from modelshop.db import Database, utcnow
from modelshop.errors import Conflict, NotFound, ValidationError
from modelshop.settings import Settings

VISITOR_RE = re.compile(r"^[0-9a-f]{32}$")
PARAMS = ("ref", *UTM)


def new_visitor_id() -> str:
    return uuid.uuid4().hex


def valid_visitor(value: str | None) -> str | None:
    return value if value and VISITOR_RE.match(value) else None


def tracking_params(query: Mapping[str, str]) -> dict[str, str]:
    """The `ref` and `utm_*` values of a query string, trimmed; empty ones left out."""
    out = {}
    for name in PARAMS:
        value = (query.get(name) or "").strip()
        if value:
            out[name] = value[:64].lower() if name == "ref" else value[:200]
    return out


def resolve(s: Session, params: Mapping[str, str]) -> tuple[Channel, Link | None] | None:
    """The channel (and link) a visit with these parameters arrived through, or None.

    `ref` names the channel; among links (of that channel, or of any channel without `ref`) the
    one whose set `utm_*` values all match, most of them, wins.
    """
    channel = None
    if params.get("ref"):
        channel = s.scalar(select(Channel).where(Channel.code == params["ref"]))
    utm = {u: params[u] for u in UTM if u in params}
    link = None
    if utm:
        q = select(Link)
        if channel is not None:
            q = q.where(Link.channel_id == channel.id)
        best = 0
        for candidate in s.scalars(q.where(Link.utm_source.in_([utm.get("utm_source", "")]) |
                                           Link.utm_source.is_(None)).order_by(Link.id)):
            wanted = {u: getattr(candidate, u) for u in UTM if getattr(candidate, u)}
            if wanted and len(wanted) > best and all(utm.get(u) == v for u, v in wanted.items()):
                link, best = candidate, len(wanted)
    if channel is None and link is not None:
        channel = s.get(Channel, link.channel_id)
    return (channel, link) if channel is not None else None


def _touch(s: Session, visitor_id: str, path: str, params: Mapping[str, str], now: dt.datetime,
           found: tuple[Channel, Link | None] | None = None) -> Touch | None:
    found = found or resolve(s, params)
    if found is None:
        return None
    channel, link = found
    touch = Touch(visitor_id=visitor_id, channel_id=channel.id, link_id=link.id if link else None,
                  ref=params.get("ref"), path=path[:300], occurred_at=now,
                  **{u: params.get(u) for u in UTM})
    s.add(touch)
    s.flush()
    return touch


def _insert_visit(dialect: str):
    """INSERT of a visit that does nothing when the visitor already landed on that page."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as upsert
    else:
        from sqlalchemy.dialects.sqlite import insert as upsert
    return upsert(Visit).on_conflict_do_nothing(index_elements=["visitor_id", "path"])


def _repeats_latest(s: Session, visitor_id: str, channel: Channel, link: Link | None, params: Mapping[str, str],
                    now: dt.datetime) -> bool:
    """Whether the visitor's latest touch is this very one, the same UTC day (a reload, say).

    Writing it again would move no first or last touch and no monthly count; skipping it keeps a
    visitor reloading a tracking link from adding a row per load.
    """
    latest = s.scalars(select(Touch).where(Touch.visitor_id == visitor_id, Touch.occurred_at <= now)
                       .order_by(Touch.occurred_at.desc(), Touch.id.desc()).limit(1)).first()
    return (latest is not None and latest.occurred_at.date() == now.date() and latest.channel_id == channel.id
            and latest.link_id == (link.id if link else None) and latest.ref == params.get("ref")
            and all(getattr(latest, u) == params.get(u) for u in UTM))


def record_visit(db: Database, visitor_id: str, path: str, params: Mapping[str, str],
                 now: dt.datetime | None = None) -> int | None:
    """Record a landing (once per visitor and page) and its touch when it came through a channel;
    the channel id or None."""
    now = now or utcnow()
    path = path[:300]
    with db.session() as s:
        s.execute(_insert_visit(s.get_bind().dialect.name).values(visitor_id=visitor_id, path=path, occurred_at=now))
        found = resolve(s, params) if params else None
        if found is None:
            return None
        if not _repeats_latest(s, visitor_id, *found, params, now):
            _touch(s, visitor_id, path, params, now, found)
        return found[0].id


def bind(s: Session, customer_id: int, visitor_id: str | None, *, model: str, window_days: int,
         now: dt.datetime, params: Mapping[str, str] | None = None) -> Attribution:
    """Bind a new customer to a channel (see the module docstring for the order); Conflict if bound."""
    if s.get(Attribution, customer_id) is not None:
        raise Conflict(f"customer {customer_id} is already bound to a channel; use `modelshop channels rebind`")
    touch = None
    if visitor_id:
        order = Touch.occurred_at.asc() if model == "first" else Touch.occurred_at.desc()
        touch = s.scalars(select(Touch).where(Touch.visitor_id == visitor_id,
                                              Touch.occurred_at >= now - dt.timedelta(days=window_days),
                                              Touch.occurred_at <= now)
                          .order_by(order, Touch.id).limit(1)).first()
    if touch is None and params:
        touch = _touch(s, visitor_id or new_visitor_id(), "/signup", params, now)
    if touch is not None:
        row = Attribution(customer_id=customer_id, channel_id=touch.channel_id, touch_id=touch.id,
                          visitor_id=touch.visitor_id, model=model, bound_at=now)
    else:
        row = Attribution(customer_id=customer_id, channel_id=direct_channel(s).id, visitor_id=visitor_id,
                          model="direct", bound_at=now)
    s.add(row)
    s.flush()
    return row


def attribution_view(a: Attribution, channel: Channel) -> dict:
    return {"customer_id": a.customer_id, "channel_id": channel.id, "channel": channel.code,
            "channel_name": channel.name, "kind": channel.kind, "model": a.model, "touch_id": a.touch_id,
            "bound_at": a.bound_at.isoformat()}


def bind_customer(db: Database, settings: Settings, customer_id: int, visitor_id: str | None = None,
                  params: Mapping[str, str] | None = None, *, now: dt.datetime | None = None) -> dict:
    """Bind an existing customer by the settings' attribution model and window."""
    now = now or utcnow()
    with db.session() as s:
        accounts.load_customer(s, customer_id)
        row = bind(s, customer_id, valid_visitor(visitor_id), model=settings.attribution_model,
                   window_days=settings.attribution_window_days, now=now, params=params)
        return attribution_view(row, s.get(Channel, row.channel_id))


def get_attribution(db: Database, customer_id: int) -> dict:
    with db.session() as s:
        row = s.get(Attribution, customer_id)
        if row is None:
            raise NotFound(f"customer {customer_id} is not bound to any channel")
        return attribution_view(row, s.get(Channel, row.channel_id))


def rebind(db: Database, customer_id: int, channel: str | int, *, reason: str, actor: str) -> dict:
    """Move a customer to another channel: the one explicit, audited way a binding changes."""
    if not reason or not reason.strip():
        raise ValidationError("reason: say why the customer's channel changes (it goes into the audit log)")
    with db.session() as s:
        accounts.load_customer(s, customer_id)
        target = direct_channel(s) if str(channel).strip().lower() == DIRECT else find_channel(s, channel)
        row = s.get(Attribution, customer_id)
        previous = s.get(Channel, row.channel_id).code if row else None
        if row is None:
            row = Attribution(customer_id=customer_id, channel_id=target.id, model="admin", bound_at=utcnow())
            s.add(row)
        elif row.channel_id == target.id:
            return attribution_view(row, target)
        else:
            s.info[REBIND] = True
            row.channel_id, row.touch_id, row.model, row.bound_at = target.id, None, "admin", utcnow()
        s.flush()
        s.info.pop(REBIND, None)
        audit.log(s, actor, "attribution.rebind", "customer", customer_id, channel=target.code,
                  previous=previous, reason=reason.strip())
        return attribution_view(row, target)


def signup(db: Database, settings: Settings, *, email: str, plan: str, visitor_id: str | None,
           params: Mapping[str, str] | None = None, name: str | None = None, actor: str = "storefront",
           now: dt.datetime | None = None) -> dict:
    """A storefront signup: the customer, its channel binding and its first key (shown this once)."""
    email = (email or "").strip()
    if not accounts.EMAIL_RE.match(email):
        raise ValidationError(f'email: "{email}" is not an e-mail address')
    with db.session() as s:
        taken = s.scalar(select(Customer.id).where(func.lower(Customer.email) == email.lower()))
    if taken is not None:
        raise Conflict("this e-mail address already has an account; ask support to send a new key")
    customer = accounts.create_customer(db, name or email.split("@")[0], plan, email=email, actor=actor)
    try:
        binding = bind_customer(db, settings, customer["id"], visitor_id, params, now=now)
    except IntegrityError:  # a concurrent bind of the same new customer cannot happen; report it plainly
        raise Conflict(f"customer {customer['id']} was bound twice at once") from None
    key = keys.create_key(db, customer["id"], name="storefront signup", actor=actor)
    return {"customer": customer, "attribution": binding, "key": key}
