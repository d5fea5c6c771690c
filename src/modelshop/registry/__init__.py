"""The model registry: versions with stages and lineage, rows in the database, files on disk.

A version is visible only once fully written: files are built in `models_dir/.incoming/<id>`,
moved into place with one rename, and only then is the row committed. The rename never replaces
a folder that is there already: a crash between rename and commit leaves an orphan folder with
no row, which nothing reads, and which looks exactly like the folder of another writer about to
commit, so it is left alone and the version goes to a fresh path beside it (see `publish`).
At registration the SHA-256 of every file is recorded in the row and in `modelshop.json`, so
a pickled file changed afterwards is refused rather than unpickled (`modelshop.inference.tfidf`).
May import: db, settings, errors.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
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
FILES_KEY = "files_sha256"  # the key in META_FILE; modelshop.inference reads the same one
PUBLISH_ATTEMPTS = 10       # version numbers tried before giving up to concurrent writers

__all__ = ["Registry", "ModelVersion", "STAGES", "META_FILE", "FILES_KEY", "parse_ref", "promotion_target",
           "publish", "file_hashes"]


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


def file_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under `folder` by relative path, but META_FILE (which carries them)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel != META_FILE:
            with open(p, "rb") as f:
                out[rel] = hashlib.file_digest(f, "sha256").hexdigest()
    return out


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
        meta_path = build_dir / META_FILE
        if not meta_path.is_file():
            raise ValidationError(f"{build_dir} has no {META_FILE}; it is not a finished model folder")
        files = file_hashes(build_dir)
        meta = json.loads(meta_path.read_text())
        meta[FILES_KEY] = files  # a copy beside the files, for a folder loaded without its row
        meta_path.write_text(json.dumps(meta, ensure_ascii=False, indent=1))

        def latest(s) -> int | None:
            return s.scalar(select(func.max(ModelVersion.version)).where(ModelVersion.name == name))

        def make_row(version: int, rel: str, first: bool) -> ModelVersion:
            row = ModelVersion(
                name=name, version=version, family=family, format=format, base_model=base_model,
                path=rel, multi_label=multi_label, labels=list(labels), metrics=metrics,
                data_sha256=data_sha256, eval_sha256=eval_sha256, parent_id=parent_id, files_sha256=files,
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
                    f" (registered: {', '.join(sorted(names))})" if names
                    else " (no model is registered yet; run `modelshop train`)")
                raise NotFound(f'no model named "{name}"{hint}')
            raise NotFound(f'model "{name}" has no version {version}')
        return row


def publish(db: Database, root: Path, build_dir: Path, rel_prefix: str, *, latest, make_row, before_add):
    """Move a finished `build_dir` to `root/rel_prefix/vN` and commit its row: the one way a
    versioned artefact (model, knowledge base, recommender) becomes visible.

    `latest(session)` gives the highest version so far, `make_row(version, rel, first)` the row,
    `before_add(session, row)` runs in the committing transaction (e.g. archiving the old production).
    Writers racing for one name each get their own number: the database's unique (name, version)
    decides who has N, and the loser takes its folder back out and tries N+1. Nothing here deletes
    or replaces a folder: `_move_in` only renames into a path that is free.
    """
    _fsync_tree(build_dir)
    for _attempt in range(PUBLISH_ATTEMPTS):
        with db.session() as s:
            top = latest(s)
        version = (top or 0) + 1
        rel = _move_in(build_dir, root, f"{rel_prefix}/v{version}")
        row = make_row(version, rel, top is None)
        try:
            with db.session() as s:
                before_add(s, row)
                s.add(row)
            return row
        except IntegrityError:  # another writer committed this version number first: take ours back, retry
            os.rename(root / rel, build_dir)
    raise Conflict(f"could not allocate a version number for {rel_prefix}; too many concurrent saves")


def _move_in(build_dir: Path, root: Path, rel: str) -> str:
    """Rename `build_dir` to `root/rel`, or, when that path is taken, to a fresh one beside it.

    A taken `vN` is a committed version, one another writer has just moved in and is committing,
    or an orphan of a crash; from here they look the same, so none is touched. The rename itself is
    the check: it fails on an existing non-empty folder (POSIX) or any existing one (Windows), so
    two writers never both get a path, and no exists()-then-rename window lets one replace the other.
    """
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    for candidate in (rel, f"{rel}-{uuid.uuid4().hex[:12]}"):
        try:
            os.rename(build_dir, root / candidate)
            return candidate
        except OSError as e:
            if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
    raise Conflict(f"{root / rel} and a fresh path beside it are both taken; retry the save")


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
