"""The feedback loop (G → A): a labelling queue, and dataset versions built from what people labelled.

    bot reply unsure or rated down → `enqueue` → pending item
    a person labels it (`label_item`, CLI `modelshop label`, the console) → labelled item
    `export_dataset(name)` → version N = version N-1's rows + the items labelled since, as JSONL
    `modelshop train --data <that file> --eval ...` → a model whose card's data_sha256 is the version's sha256

The file is written with `Dataset.to_jsonl` and its sha256 is `Dataset.fingerprint()`, the same
fingerprint training records, so `dataset_for_sha256` leads from a model back to its dataset version.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelshop.apps.artifacts import check_name
from modelshop.apps.tables import DatasetVersion, LabelItem
from modelshop.data import Dataset, load_dataset
from modelshop.db import Database, get_database, utcnow
from modelshop.errors import Conflict, NotFound, ValidationError, did_you_mean
from modelshop.settings import Settings, get_settings

SKIP = "skip"


def enqueue(s: Session, *, dataset: str, text: str, reason: str, suggested: str | None = None,
            confidence: float | None = None, choices: list[str] | None = None,
            turn_id: int | None = None) -> LabelItem:
    """Put a message in the queue inside the caller's transaction (once per turn: a repeat updates it)."""
    item = s.scalar(select(LabelItem).where(LabelItem.turn_id == turn_id)) if turn_id is not None else None
    if item is not None:
        if reason == "down_rated":
            item.reason = reason
        return item
    item = LabelItem(dataset=dataset, text=text, reason=reason, suggested=suggested, confidence=confidence,
                     choices=list(choices or []), turn_id=turn_id, status="pending", created_at=utcnow())
    s.add(item)
    s.flush()
    return item


def item_dict(item: LabelItem) -> dict:
    return {"id": item.id, "dataset": item.dataset, "text": item.text, "reason": item.reason,
            "suggested": item.suggested, "confidence": item.confidence, "choices": item.choices,
            "turn_id": item.turn_id, "status": item.status, "label": item.label,
            "labelled_by": item.labelled_by, "created_at": item.created_at.isoformat()}


def pending(dataset: str | None = None, *, limit: int = 100, settings: Settings | None = None,
            db: Database | None = None) -> list[dict]:
    """Items waiting for a label, oldest first."""
    db = db or get_database(settings)
    q = select(LabelItem).where(LabelItem.status == "pending").order_by(LabelItem.id).limit(limit)
    if dataset:
        q = q.where(LabelItem.dataset == dataset)
    with db.session() as s:
        return [item_dict(i) for i in s.scalars(q)]


def waiting_for_export(*, settings: Settings | None = None, db: Database | None = None) -> dict[str, int]:
    """Per dataset, the items labelled since its last version (what the next export adds)."""
    from sqlalchemy import func

    db = db or get_database(settings)
    with db.session() as s:
        return dict(s.execute(select(LabelItem.dataset, func.count()).where(
            LabelItem.status == "labelled", LabelItem.exported_in.is_(None)).group_by(LabelItem.dataset)).all())


def label_item(item_id: int, label: str, *, by: str = "cli", allow_new: bool = False,
               settings: Settings | None = None, db: Database | None = None) -> dict:
    """Give item `item_id` its label ("skip" sets it aside); a label outside its choices needs allow_new."""
    db = db or get_database(settings)
    label = (label or "").strip()
    if not label:
        raise ValidationError("label is empty; give one of the item's choices, or skip")
    with db.session() as s:
        item = s.get(LabelItem, item_id)
        if item is None:
            raise NotFound(f"no labelling item {item_id}; list the pending ones with `modelshop label`")
        if item.exported_in is not None:
            raise Conflict(f"item {item_id} is already in dataset version id {item.exported_in}; "
                           "labels of exported items do not change")
        if label == SKIP:
            item.status, item.label = "skipped", None
        else:
            if item.choices and label not in item.choices and not allow_new:
                raise ValidationError(f'"{label}" is not one of the labels {", ".join(item.choices)}'
                                      f'{did_you_mean(label, item.choices)}; pass --new to add a new label')
            item.status, item.label = "labelled", label
        item.labelled_by, item.labelled_at = by, utcnow()
        return item_dict(item)


def add_item(dataset: str, text: str, *, choices: list[str] | None = None, settings: Settings | None = None,
             db: Database | None = None) -> dict:
    """Queue a message by hand (e.g. from the console)."""
    check_name(dataset, "dataset name")
    if not text or not text.strip():
        raise ValidationError("text is empty; queue a message with visible characters")
    db = db or get_database(settings)
    with db.session() as s:
        return item_dict(enqueue(s, dataset=dataset, text=text.strip(), reason="manual", choices=choices))


def _read_rows(path: Path) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            texts.append(row["text"])
            labels.append(row["label"])
    return texts, labels


def version_dict(row: DatasetVersion, root: Path) -> dict:
    return {"name": row.name, "version": row.version, "path": str(root / row.path), "sha256": row.sha256,
            "rows": row.rows, "added": row.added, "parent_id": row.parent_id, "base": row.base,
            "created_at": row.created_at.isoformat()}


def export_dataset(name: str, *, base: str | Path | None = None, text_col: str | None = None,
                   label_col: str | None = None, settings: Settings | None = None) -> dict:
    """Write version N of dataset `name`: version N-1 (or `base` for the first) + newly labelled items."""
    settings = settings or get_settings()
    check_name(name, "dataset name")
    db = get_database(settings)
    root = settings.home / "apps"
    with db.session() as s:
        parent = s.scalar(select(DatasetVersion).where(DatasetVersion.name == name)
                          .order_by(DatasetVersion.version.desc()).limit(1))
        items = list(s.scalars(select(LabelItem).where(LabelItem.dataset == name, LabelItem.status == "labelled",
                                                       LabelItem.exported_in.is_(None)).order_by(LabelItem.id)))
        known = list(s.scalars(select(LabelItem.dataset).distinct()))
    if parent is not None:
        if base is not None:
            raise ValidationError(f"dataset {name} already has version {parent.version}; --base only starts "
                                  "a new dataset")
        texts, labels = _read_rows(root / parent.path)
    elif base is not None:
        start = load_dataset(base, text_col, label_col, multi_label=False)
        texts, labels = list(start.texts), list(start.labels)
    else:
        texts, labels = [], []
    if not items:
        where = f"since version {parent.version}" if parent else "yet"
        hint = did_you_mean(name, known) if name not in known else ""
        if parent is not None or base is None:
            raise ValidationError(f'no newly labelled items for dataset "{name}" {where}{hint}; '
                                  "label pending ones with `modelshop label`")
    texts += [i.text for i in items]
    labels += [i.label for i in items]
    data = Dataset(texts=texts, labels=labels, multi_label=False, source=name)
    version = (parent.version if parent else 0) + 1
    sha = data.fingerprint()
    # the name carries the content hash, so a concurrent export of the same version never overwrites ours
    rel = f"datasets/{name}/v{version}-{sha[:12]}.jsonl"
    incoming = root / ".incoming" / f"{uuid.uuid4().hex}.jsonl"
    data.to_jsonl(incoming)
    with open(incoming, "rb") as f:
        os.fsync(f.fileno())
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    os.replace(incoming, root / rel)
    row = DatasetVersion(name=name, version=version, path=rel, sha256=sha, rows=len(data), added=len(items),
                         parent_id=parent.id if parent else None,
                         base=str(base) if base is not None else None, created_at=utcnow())
    try:
        with db.session() as s:
            s.add(row)
            s.flush()
            for item in items:
                s.get(LabelItem, item.id).exported_in = row.id
    except IntegrityError:
        (root / rel).unlink(missing_ok=True)
        raise Conflict(f"dataset {name} version {version} was exported concurrently; export again") from None
    return version_dict(row, root)


def list_datasets(name: str | None = None, *, settings: Settings | None = None) -> list[dict]:
    settings = settings or get_settings()
    q = select(DatasetVersion).order_by(DatasetVersion.name, DatasetVersion.version)
    if name:
        q = q.where(DatasetVersion.name == name)
    with get_database(settings).session() as s:
        return [version_dict(r, settings.home / "apps") for r in s.scalars(q)]


def dataset_for_sha256(sha256: str, *, settings: Settings | None = None) -> dict | None:
    """The dataset version a model was trained on, from its card's data_sha256 (None when not ours)."""
    settings = settings or get_settings()
    with get_database(settings).session() as s:
        row = s.scalar(select(DatasetVersion).where(DatasetVersion.sha256 == sha256).limit(1))
        return version_dict(row, settings.home / "apps") if row else None
