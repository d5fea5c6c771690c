"""Console sessions: a random id in the browser's cookie, everything else on the server (`WebSession`).

    open_session(db, login)            → (the cookie's session id, shown once, and the Session)
    lookup(db, settings, session_id)   → the Session, checked now: its own expiry and logout, and the
                                         key it was opened with (revoked, expired, suspended, or the
                                         environment's admin key changed: the session ends with it)
    end_session(db, session_id)        logout

The cookie never holds the key: a stolen cookie dies with logout, with its key or after
`SESSION_TTL`, and the database keeps only the SHA-256 of the session id. The key is checked at
every lookup (a join, not a cache), so revoking a key through any library call ends its console
sessions at once without the key code knowing about them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, select

from modelshop.billing import audit
from modelshop.billing.tables import ApiKey
from modelshop.channels.tables import Partner, PartnerKey
from modelshop.db import Database, utcnow
from modelshop.errors import Forbidden, Unauthorized
from modelshop.settings import Settings
from modelshop.web.tables import WebSession

SESSION_TTL = dt.timedelta(hours=12)   # a console login lasts this long, whatever is done in it
MAX_ID_CHARS = 128                     # a longer cookie is not one of ours: refused before any lookup
ENDED = "your console session ended; log in again"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Login:
    """The key a session is opened with, as the console's login checked it."""

    kind: str                         # admin | partner
    key: str                          # the secret itself: only its SHA-256 is stored
    api_key_id: int | None = None     # a database admin key (None: the environment's MODELSHOP_ADMIN_KEY)
    partner_key_id: int | None = None


@dataclass(frozen=True)
class Session:
    kind: str                 # admin | partner
    csrf: str                 # the token each of its forms carries
    actor: str                # who did it, in the audit log: admin:env, admin-key:ID, partner:ID (+ /console)
    partner_id: int | None = None
    expires_at: dt.datetime | None = None


def open_session(db: Database, login: Login, *, now: dt.datetime | None = None) -> tuple[str, Session]:
    """A new session for a key the caller has just authenticated; the returned id goes into the cookie."""
    now = now or utcnow()
    session_id = secrets.token_urlsafe(32)
    with db.session() as s:
        s.execute(delete(WebSession).where(WebSession.expires_at < now))  # nothing reads an expired one again
        row = WebSession(id_hash=digest(session_id), kind=login.kind, key_hash=digest(login.key),
                         api_key_id=login.api_key_id, partner_key_id=login.partner_key_id,
                         csrf=secrets.token_urlsafe(32), created_at=now, expires_at=now + SESSION_TTL)
        s.add(row)
        s.flush()
        session = _session(s, row)
        audit.log(s, session.actor, "console.login", "web_session", row.id, kind=row.kind,
                  expires_at=row.expires_at.isoformat())
    return session_id, session


def lookup(db: Database, settings: Settings, session_id: str | None, *, now: dt.datetime | None = None) -> Session:
    """The live session of this cookie value; Unauthorized (Forbidden for a suspended partner) with the reason."""
    if not session_id:
        raise Unauthorized("log in first")
    if len(session_id) > MAX_ID_CHARS:
        raise Unauthorized(ENDED)
    now = now or utcnow()
    with db.session() as s:
        row = s.scalar(select(WebSession).where(WebSession.id_hash == digest(session_id)))
        if row is None:
            raise Unauthorized(ENDED)
        if row.revoked_at is not None:
            raise Unauthorized("you logged out of this console session; log in again")
        if row.expires_at <= now:
            raise Unauthorized(f"your console session expired (after {SESSION_TTL.total_seconds() / 3600:g} hours); "
                               "log in again")
        _check_key(s, settings, row, now)
        return _session(s, row)


def end_session(db: Database, session_id: str | None) -> bool:
    """Log out: the session can never be used again. False when there was no live one."""
    if not session_id or len(session_id) > MAX_ID_CHARS:
        return False
    with db.session() as s:
        row = s.scalar(select(WebSession).where(WebSession.id_hash == digest(session_id)))
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = utcnow()
        audit.log(s, _actor(s, row), "console.logout", "web_session", row.id)
        return True


def _check_key(s, settings: Settings, row: WebSession, now: dt.datetime) -> None:
    if row.partner_key_id is not None:
        key = s.get(PartnerKey, row.partner_key_id)
        if key is None or key.status != "active" or not hmac.compare_digest(key.key_hash, row.key_hash):
            raise Unauthorized(f"partner key {key.prefix if key else ''}… was revoked, so its console session "
                               "ended; ask for a new key")
        if s.get(Partner, key.partner_id).status != "active":
            raise Forbidden(f"partner account {key.partner_id} is suspended; contact your channel manager")
    elif row.api_key_id is not None:
        key = s.get(ApiKey, row.api_key_id)
        if key is None or key.kind != "admin" or not hmac.compare_digest(key.key_hash, row.key_hash):
            raise Unauthorized(ENDED)
        if key.status != "active":
            raise Unauthorized(f"admin key {key.prefix}… was revoked, so its console session ended; "
                               "log in with a current key")
        if key.expires_at is not None and key.expires_at <= now:
            raise Unauthorized(f"admin key {key.prefix}… expired, so its console session ended; "
                               "log in with a current key")
    else:  # the environment's admin key: the session lives only as long as that key stays the same
        current = settings.admin_key.get_secret_value() if settings.admin_key else None
        if current is None or not hmac.compare_digest(digest(current), row.key_hash):
            raise Unauthorized("MODELSHOP_ADMIN_KEY has changed since this console session began; "
                               "log in with the current key")


def _actor(s, row: WebSession) -> str:
    if row.partner_key_id is not None:
        return f"partner:{s.get(PartnerKey, row.partner_key_id).partner_id}/console"
    return "admin:env/console" if row.api_key_id is None else f"admin-key:{row.api_key_id}/console"


def _session(s, row: WebSession) -> Session:
    partner_id = s.get(PartnerKey, row.partner_key_id).partner_id if row.partner_key_id is not None else None
    return Session(kind=row.kind, csrf=row.csrf, actor=_actor(s, row), partner_id=partner_id,
                   expires_at=row.expires_at)
