"""`clean_dataset`: normalise, redact personal data, drop empty and duplicate rows.

Order matters and is fixed: normalise → redact → drop empty → drop duplicates, so that texts
differing only in spacing, width or in the e-mail they contained count as duplicates.
A duplicate is a row whose cleaned text *and* labels equal an earlier row's; the first is kept.
The same text with different labels is a conflict, not a duplicate: those rows are kept and
counted (`conflicting_texts`) unless `drop_conflicts=True`, which drops every row of such a text
because no one of its labels can be trusted.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from modelshop.errors import ValidationError

from .dataset import Dataset
from .normalize import normalize_text
from .pii import redact_with_counts


def clean_dataset(ds: Dataset, *, redact: bool = True, drop_duplicates: bool = True,
                  drop_empty: bool = True, drop_conflicts: bool = False) -> tuple[Dataset, dict]:
    """The cleaned dataset and counts of what was done (rows_in, rows_out, pii_redacted, ...)."""
    texts = [normalize_text(t) for t in ds.texts]
    changed = sum(a != b for a, b in zip(ds.texts, texts))
    pii: Counter[str] = Counter()
    if redact:
        for i, text in enumerate(texts):
            texts[i], found = redact_with_counts(text)
            pii.update(found)
    labels = list(ds.labels)
    keys = [_label_key(lab) for lab in labels] if labels else [""] * len(texts)
    keep = list(range(len(texts)))
    empty = duplicates = conflicts = 0
    if drop_empty:
        keep = [i for i in keep if texts[i]]
        empty = len(texts) - len(keep)
    by_text: dict[str, set[str]] = defaultdict(set)
    for i in keep:
        by_text[texts[i]].add(keys[i])
    conflicting = {text for text, seen in by_text.items() if len(seen) > 1}
    if drop_conflicts and conflicting:
        before = len(keep)
        keep = [i for i in keep if texts[i] not in conflicting]
        conflicts = before - len(keep)
    if drop_duplicates:
        seen_rows: set[tuple[str, str]] = set()
        unique = []
        for i in keep:
            row = (texts[i], keys[i])
            if row not in seen_rows:
                seen_rows.add(row)
                unique.append(i)
        duplicates = len(keep) - len(unique)
        keep = unique
    if not keep:
        raise ValidationError(f"cleaning {ds.source or 'the dataset'} left no rows (all empty or "
                              "duplicates); check the text column")
    cleaned = Dataset(texts=[texts[i] for i in keep],
                      labels=[labels[i] for i in keep] if labels else [],
                      multi_label=ds.multi_label, source=ds.source, text_col=ds.text_col,
                      label_col=ds.label_col, warnings=list(ds.warnings))
    report = {
        "rows_in": len(ds),
        "rows_out": len(cleaned),
        "normalized": changed,
        "pii_redacted": dict(sorted(pii.items())),
        "empty_dropped": empty,
        "duplicates_dropped": duplicates,
        "conflicting_texts": len(conflicting),
        "conflicts_dropped": conflicts,
        "load_warnings": list(ds.warnings),
    }
    return cleaned, report


def _label_key(label: str | list[str]) -> str:
    return "\x1f".join(label) if isinstance(label, list) else label
