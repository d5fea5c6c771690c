"""Application tables: versioned artifacts (FAQ knowledge bases, recommenders), support bots with
their sessions, turns and tickets, the labelling queue and the dataset versions it feeds.

Files of an artifact live under `Settings.home / "apps"`; a row points at them (see `artifacts.py`).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from modelshop.db import Base, UTCDateTime, utcnow

ARTIFACT_KINDS = ("faq", "recommender")
STAGES = ("staging", "production", "archived")


class Artifact(Base):
    """One immutable version of a knowledge base or a recommender; its files are under `path`."""

    __tablename__ = "apps_artifacts"
    __table_args__ = (UniqueConstraint("kind", "name", "version", name="uq_apps_artifacts_kind_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))            # faq | recommender
    name: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(20))
    path: Mapped[str] = mapped_column(String(300))           # relative to home/apps
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    data_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    promoted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


class Bot(Base):
    __tablename__ = "apps_bots"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    intent_model: Mapped[str] = mapped_column(String(200))   # NAME or NAME:VERSION in the model registry
    kb: Mapped[str | None] = mapped_column(String(100))      # knowledge base name (its production version)
    llm: Mapped[str | None] = mapped_column(String(200))     # generative model composing its FAQ replies, or None
    dataset: Mapped[str] = mapped_column(String(100))        # where its labelled messages go
    config: Mapped[dict] = mapped_column(JSON, default=dict)  # thresholds, hand-off rules, replies
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChatSession(Base):
    __tablename__ = "apps_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    bot_id: Mapped[int] = mapped_column(ForeignKey("apps_bots.id"), index=True)
    customer_id: Mapped[int | None] = mapped_column(Integer)   # the API customer whose key opened it
    status: Mapped[str] = mapped_column(String(20), default="open")   # open | handed_off
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Turn(Base):
    """One user message and the bot's reply to it."""

    __tablename__ = "apps_turns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("apps_sessions.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    reply: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(20))           # faq | llm | intent | handoff | fallback | waiting
    intent: Mapped[str | None] = mapped_column(String(100))
    confidence: Mapped[float | None] = mapped_column(Float)
    faq_id: Mapped[str | None] = mapped_column(String(200))
    faq_score: Mapped[float | None] = mapped_column(Float)
    model: Mapped[str | None] = mapped_column(String(200))    # llm: the NAME:VERSION that wrote the reply
    citations: Mapped[list | None] = mapped_column(JSON)      # llm: the FAQ ids the reply cites
    handoff: Mapped[bool] = mapped_column(Boolean, default=False)
    rating: Mapped[int | None] = mapped_column(Integer)       # 1..5 (up = 5, down = 1)
    rated_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Ticket(Base):
    """A hand-off: a person reads the conversation and answers it."""

    __tablename__ = "apps_tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bot_id: Mapped[int] = mapped_column(ForeignKey("apps_bots.id"), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("apps_sessions.id"), index=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("apps_turns.id"))
    reason: Mapped[str] = mapped_column(String(40))           # requested | intent:<name> | unsure
    status: Mapped[str] = mapped_column(String(20), default="open")   # open | answered
    question: Mapped[str] = mapped_column(Text)
    reply: Mapped[str | None] = mapped_column(Text)
    answered_by: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    answered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class DatasetVersion(Base):
    """A labelled JSONL file under home/apps/datasets: its parent's rows plus newly labelled items."""

    __tablename__ = "apps_dataset_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_apps_dataset_versions_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(300))            # relative to home/apps
    sha256: Mapped[str] = mapped_column(String(64))           # Dataset.fingerprint(): the model card's data_sha256
    rows: Mapped[int] = mapped_column(Integer)
    added: Mapped[int] = mapped_column(Integer)               # labelled items new in this version
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("apps_dataset_versions.id"))
    base: Mapped[str | None] = mapped_column(String(300))     # the file the first version started from
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


class LabelItem(Base):
    """A message waiting for (or given) its correct intent by a person."""

    __tablename__ = "apps_label_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset: Mapped[str] = mapped_column(String(100), index=True)
    text: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(String(20))           # low_confidence | down_rated | manual
    suggested: Mapped[str | None] = mapped_column(String(100))
    confidence: Mapped[float | None] = mapped_column(Float)
    choices: Mapped[list] = mapped_column(JSON, default=list)
    turn_id: Mapped[int | None] = mapped_column(ForeignKey("apps_turns.id"), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)  # pending | labelled | skipped
    label: Mapped[str | None] = mapped_column(String(100))
    labelled_by: Mapped[str | None] = mapped_column(String(100))
    labelled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    exported_in: Mapped[int | None] = mapped_column(ForeignKey("apps_dataset_versions.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
