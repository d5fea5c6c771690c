"""The model registry: versions with stages and lineage, rows in the database, files on disk.

A version is visible only once fully written: files are built in `models_dir/.incoming/<id>`,
moved into place with one rename, and only then is the row committed. A crash in between leaves
an orphan folder with no row, which nothing reads and the next save of that version removes.
May import: db, settings, errors.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from modelshop.db import Database, get_database, utcnow
from modelshop.errors import Conflict, NotFound, ValidationError, did_you_mean
from modelshop.registry.tables import STAGES, ModelVersion
from modelshop.settings import Settings, get_settings

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
META_FILE = "modelshop.json"

__all__ = ["Registry", "ModelVersion", "STAGES", "META_FILE", "parse_ref", "promotion_target", "publish"]


def parse_ref(ref: str) -> tuple[str, int | None]:
    """'name' or 'name:3' → (name, version or None)."""
    name, _, version = ref.partition(":")
    if version and not version.isdigit():
        raise ValidationError(f'model reference "{ref}" must be NAME or NAME:VERSION with a number')
    return name, int(version) if version else None


def promotion_target(ref: str, stage: str) -> tuple[str, int]:
    """(name, version) of a promotion to `stage`, or the one-line error saying what to pass."""
    if stage not in STAGES:
        raise ValidationError(f'stage "{stage}" is not one of {", ".join(STAGES)}{did_you_mean(stage, STAGES)}')
    name, version = parse_ref(ref)
    if version is None:
        raise ValidationError(f'promote needs NAME:VERSION, e.g. "{name}:2"')
    return name, version


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValidationError(
            f'model name "{name}" is not allowed; use letters, digits, ".", "_" or "-" (max 100)')
    return name


@dataclass
class Registry:
    db: Database
    models_dir: Path

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> Registry:
        settings = settings or get_settings()
        return cls(get_database(settings), settings.models_dir)

    # --- writing -------------------------------------------------------------------------

    def incoming_dir(self) -> Path:
        """A fresh folder to build a version's files in before `register` moves it into place."""
        path = self.models_dir / ".incoming" / uuid.uuid4().hex
        path.mkdir(parents=True)
        return path

    def register(self, name: str, build_dir: Path, *, family: str, format: str, base_model: str,
                 labels: list[str], multi_label: bool, metrics: dict, data_sha256: str | None = None,
                 eval_sha256: str | None = None, parent_id: int | None = None,
                 stage: str | None = None) -> ModelVersion:
        """Move `build_dir` into place as the next version of `name` and record it.

        The first version of a name goes to production at once; later ones wait in staging.
        """
        check_name(name)
        if not (build_dir / META_FILE).is_file():
            raise ValidationError(f"{build_dir} has no {META_FILE}; it is not a finished model folder")

        def latest(s) -> int | None:
            return s.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.name == name))

        def make_row(version: int, rel: str, first: bool) -> ModelVersion:
            row = ModelVersion(
                name=name, version=version, family=family, format=format, base_model=base_model,
                path=rel, multi_label=multi_label, labels=list(labels), metrics=metrics,
                data_sha256=data_sha256, eval_sha256=eval_sha256, parent_id=parent_id,
                stage=stage or ("production" if first else "staging"),
            )
            if row.stage == "production":
                row.promoted_at = utcnow()
            return row

        def before_add(s, row: ModelVersion) -> None:
            if row.stage == "production":
                self._archive_production(s, name)

        return publish(self.db, self.models_dir, build_dir, name, latest=latest, make_row=make_row,
                       before_add=before_add)

    def promote(self, ref: str, stage: str = "production") -> ModelVersion:
        name, version = promotion_target(ref, stage)
        with self.db.session() as s:
            row = self._find(s, name, version)
            if stage == "production":
                self._archive_production(s, name, keep=row.id)
                row.promoted_at = utcnow()
            row.stage = stage
        return row

    @staticmethod
    def _archive_production(s, name: str, keep: int | None = None) -> None:
        for old in s.scalars(select(ModelVersion).where(
                ModelVersion.name == name, ModelVersion.stage == "production")):
            if old.id != keep:
                old.stage = "archived"

    # --- reading -------------------------------------------------------------------------

    def list(self, name: str | None = None) -> list[ModelVersion]:
        q = select(ModelVersion).order_by(ModelVersion.name, ModelVersion.version)
        if name:
            q = q.where(ModelVersion.name == name)
        with self.db.session() as s:
            return list(s.scalars(q))

    def get(self, ref: str) -> ModelVersion:
        """NAME:VERSION, or NAME for its production version (else its latest)."""
        name, version = parse_ref(ref)
        with self.db.session() as s:
            return self._find(s, name, version)

    def production(self) -> list[ModelVersion]:
        with self.db.session() as s:
            return list(s.scalars(select(ModelVersion).where(ModelVersion.stage == "production")
                                  .order_by(ModelVersion.name)))

    def get_by_id(self, version_id: int) -> ModelVersion:
        with self.db.session() as s:
            row = s.get(ModelVersion, version_id)
            if row is None:
                raise NotFound(f"model version id {version_id} does not exist")
            return row

    def path(self, row: ModelVersion) -> Path:
        return self.models_dir / row.path

    def meta(self, row: ModelVersion) -> dict:
        return json.loads((self.path(row) / META_FILE).read_text())

    def _find(self, s, name: str, version: int | None) -> ModelVersion:
        q = select(ModelVersion).where(ModelVersion.name == name)
        if version is not None:
            row = s.scalar(q.where(ModelVersion.version == version))
        else:
            row = s.scalar(q.where(ModelVersion.stage == "production")) or s.scalar(
                q.order_by(ModelVersion.version.desc()).limit(1))
        if row is None:
            names = list(s.scalars(select(ModelVersion.name).distinct()))
            if name not in names:
                hint = did_you_mean(name, names) or (
                    f" (registered: {', '.join(sorted(names))})" if names else " (no model is registered yet; run `modelshop train`)")
                raise NotFound(f'no model named "{name}"{hint}')
            raise NotFound(f'model "{name}" has no version {version}')
        return row


def publish(db: Database, root: Path, build_dir: Path, rel_prefix: str, *, latest, make_row, before_add):
    """Move a finished `build_dir` to `root/rel_prefix/vN` and commit its row: the one way a
    versioned artefact (model, knowledge base, recommender) becomes visible.

    `latest(session)` gives the highest version so far, `make_row(version, rel, first)` the row,
    `before_add(session, row)` runs in the committing transaction (e.g. archiving the old production).
    """
    _fsync_tree(build_dir)
    for _attempt in range(5):
        with db.session() as s:
            top = latest(s)
        version = (top or 0) + 1
        rel = f"{rel_prefix}/v{version}"
        target = root / rel
        if target.exists():  # an orphan from a crash between rename and commit
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(build_dir, target)
        row = make_row(version, rel, top is None)
        try:
            with db.session() as s:
                before_add(s, row)
                s.add(row)
            return row
        except IntegrityError:  # another writer took this version number: move back, retry
            os.replace(target, build_dir)
    raise Conflict(f"could not allocate a version number for {rel_prefix}; too many concurrent saves")


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
