"""Versioned application artifacts (knowledge bases, recommenders): files under `home/apps`, one row each.

Like the model registry, a version is visible only once complete: its files are built in
`home/apps/.incoming/<id>`, moved into `home/apps/<kind>/<name>/v<N>` with one rename, and only
then is its row committed. A crash in between leaves a folder without a row, which nothing
reads and the next save of that version replaces. A new version goes to production at once
(the previous one is archived); `promote` moves any version back.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from modelshop.apps.tables import Artifact
from modelshop.db import Database, get_database, utcnow
from modelshop.errors import NotFound, ValidationError, did_you_mean
from modelshop.registry import promotion_target, publish
from modelshop.settings import Settings, get_settings

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
META_FILE = "artifact.json"
WHAT = {"faq": ("knowledge base", "modelshop apps faq build"),
        "recommender": ("recommender", "modelshop apps recommend fit")}


def check_name(name: str, what: str = "name") -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationError(f'{what} "{name}" is not allowed; use letters, digits, ".", "_" or "-" '
                              "(at most 100, starting with a letter or digit)")
    return name


def parse_ref(ref: str) -> tuple[str, int | None]:
    """'name' or 'name:3' → (name, version or None)."""
    name, _, version = ref.partition(":")
    if version and not version.isdigit():
        raise ValidationError(f'"{ref}" must be NAME or NAME:VERSION with a whole number')
    return name, int(version) if version else None


@dataclass
class ArtifactStore:
    db: Database
    root: Path          # home/apps

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> ArtifactStore:
        settings = settings or get_settings()
        return cls(get_database(settings), settings.home / "apps")

    def incoming_dir(self) -> Path:
        """A fresh folder to build files in before `register` moves it into place."""
        path = self.root / ".incoming" / uuid.uuid4().hex
        path.mkdir(parents=True)
        return path

    def register(self, kind: str, name: str, build_dir: Path, meta: dict,
                 data_sha256: str | None = None) -> Artifact:
        """Move `build_dir` into place as the next version of `name` (production) and record it."""
        check_name(name)
        (build_dir / META_FILE).write_text(json.dumps(meta, ensure_ascii=False, indent=1))
        return publish(
            self.db, self.root, build_dir, f"{kind}/{name}",
            latest=lambda s: s.scalar(select(func.max(Artifact.version))
                                      .where(Artifact.kind == kind, Artifact.name == name)),
            make_row=lambda version, rel, _first: Artifact(
                kind=kind, name=name, version=version, stage="production", path=rel, meta=meta,
                data_sha256=data_sha256, promoted_at=utcnow()),
            before_add=lambda s, _row: self._archive_production(s, kind, name))

    def promote(self, kind: str, ref: str, stage: str = "production") -> Artifact:
        name, version = promotion_target(ref, stage)
        with self.db.session() as s:
            row = self._find(s, kind, name, version)
            if stage == "production":
                self._archive_production(s, kind, name, keep=row.id)
                row.promoted_at = utcnow()
            row.stage = stage
        return row

    def get(self, kind: str, ref: str) -> Artifact:
        """NAME:VERSION, or NAME for its production version (else its latest)."""
        name, version = parse_ref(ref)
        with self.db.session() as s:
            return self._find(s, kind, name, version)

    def list(self, kind: str, name: str | None = None) -> list[Artifact]:
        q = select(Artifact).where(Artifact.kind == kind).order_by(Artifact.name, Artifact.version)
        if name:
            q = q.where(Artifact.name == name)
        with self.db.session() as s:
            return list(s.scalars(q))

    def names(self, kind: str) -> list[str]:
        with self.db.session() as s:
            return sorted(s.scalars(select(Artifact.name).where(Artifact.kind == kind).distinct()))

    def path(self, row: Artifact) -> Path:
        return self.root / row.path

    @staticmethod
    def _archive_production(s, kind: str, name: str, keep: int | None = None) -> None:
        for old in s.scalars(select(Artifact).where(Artifact.kind == kind, Artifact.name == name,
                                                    Artifact.stage == "production")):
            if old.id != keep:
                old.stage = "archived"

    def _find(self, s, kind: str, name: str, version: int | None) -> Artifact:
        q = select(Artifact).where(Artifact.kind == kind, Artifact.name == name)
        if version is not None:
            row = s.scalar(q.where(Artifact.version == version))
        else:
            row = s.scalar(q.where(Artifact.stage == "production")) or s.scalar(
                q.order_by(Artifact.version.desc()).limit(1))
        if row is None:
            what, command = WHAT[kind]
            names = list(s.scalars(select(Artifact.name).where(Artifact.kind == kind).distinct()))
            if name not in names:
                hint = did_you_mean(name, names) or (
                    f" (known: {', '.join(sorted(names))})" if names else f" (none yet; make one with `{command}`)")
                raise NotFound(f'no {what} named "{name}"{hint}')
            raise NotFound(f'{what} "{name}" has no version {version}')
        return row
