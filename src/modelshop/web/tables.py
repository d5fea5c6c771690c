"""The web part's table: console sessions, kept on the server so that they can be ended.

A browser holds only a random session id in its cookie; the database keeps its SHA-256 (a
leaked database row cannot be replayed as a cookie), the key the session was opened with (by
row id, or for the environment's admin key by its SHA-256, so rotating that key ends its
sessions), the session's CSRF token and its expiry. Logout sets `revoked_at`; a revoked or
expired key ends the session at its next request (`modelshop.web.sessions.lookup`).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from modelshop.db import Base, UTCDateTime, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")


class WebSession(Base):
    """One console login: an admin (environment key or database admin key) or a partner key."""

    __tablename__ = "web_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    id_hash: Mapped[str] = mapped_column(String(64), unique=True)      # SHA-256 of the cookie's session id
    kind: Mapped[str] = mapped_column(String(10))                       # admin | partner
    key_hash: Mapped[str] = mapped_column(String(64))                   # SHA-256 of the key it logged in with
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("billing_api_keys.id"), index=True)
    partner_key_id: Mapped[int | None] = mapped_column(ForeignKey("channels_partner_keys.id"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))                       # the token every form of it carries
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
