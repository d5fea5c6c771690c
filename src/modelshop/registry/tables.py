"""Registry tables: one row per model version; its files live under `Settings.models_dir`."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from modelshop.db import Base, UTCDateTime, utcnow

STAGES = ("staging", "production", "archived")


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_versions_name_version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    version: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(20), default="staging")
    family: Mapped[str] = mapped_column(String(20))          # transformer | tfidf
    format: Mapped[str] = mapped_column(String(20))          # pytorch | int8 | onnx | sklearn
    base_model: Mapped[str] = mapped_column(String(300))
    path: Mapped[str] = mapped_column(String(300))           # relative to models_dir
    multi_label: Mapped[bool] = mapped_column(default=False)
    labels: Mapped[list] = mapped_column(JSON)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    data_sha256: Mapped[str | None] = mapped_column(String(64))
    eval_sha256: Mapped[str | None] = mapped_column(String(64))
    # relative path → SHA-256 of each file at registration; None on versions registered before
    # they were recorded (see `modelshop.inference.tfidf.load_pickle`)
    files_sha256: Mapped[dict | None] = mapped_column(JSON)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    promoted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"
