"""`profile_dataset`: what a dataset holds and what is wrong with it, as one JSON-ready dict.

Size, labels and imbalance, token lengths and a recommended `max_length`, duplicates, conflicting
labels, train/eval leakage, personal data, the languages of the texts and how well the base model's
tokenizer covers each (`languages`), plus `warnings`: one readable sentence per problem with what to
do about it. The report writer (`report`) renders this dict; nothing here draws.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from modelshop.errors import ValidationError

from . import duplicates as dup
from .dataset import Dataset
from .languages import coverage_warnings, detect_languages, language_summary, tokenizer_coverage
from .pii import find_pii
from .tokens import percentile, recommend_max_length, token_lengths

IMBALANCE_WARN = 10.0
FEW_ROWS = 5
HIST_BINS = 30


def profile_dataset(ds: Dataset, tokenizer: Any = None, eval_ds: Dataset | None = None, *,
                    max_model_length: int = 512, base_model: str | None = None) -> dict:
    """Profile `ds` (and its leakage into `eval_ds`); token lengths by `tokenizer` or the fallback.

    `base_model` names the model `tokenizer` belongs to in the coverage warnings (default: the
    tokenizer's own name); without a tokenizer (tfidf) there is no coverage to measure.
    """
    if len(ds) == 0:
        raise ValidationError("the dataset has no rows to profile; load a file with at least one row")
    lengths = token_lengths(ds.texts, tokenizer)
    counts = _label_counts(ds)
    groups = dup.exact_groups(ds.texts)
    index = dup.KeyIndex.build(groups)
    pii: Counter[str] = Counter()
    pii_rows = 0
    for text in ds.texts:
        found = find_pii(text)
        pii.update(found)
        pii_rows += bool(found)
    profile: dict[str, Any] = {
        "source": ds.source,
        "fingerprint": ds.fingerprint(),
        "rows": len(ds),
        "text_col": ds.text_col,
        "label_col": ds.label_col if ds.labels else None,
        "multi_label": ds.multi_label,
        "labels": counts,
        "num_labels": len(counts),
        "imbalance_ratio": _imbalance(counts),
        "tokenizer": _tokenizer_name(tokenizer),
        "max_model_length": max_model_length,
        "length": _length_stats(lengths, max_model_length),
        "recommended_max_length": recommend_max_length(lengths, max_model_length),
        "empty_texts": sum(1 for t in ds.texts if not t.strip()),
        "exact_duplicates": dup.exact_duplicates(groups, ds.texts),
        "near_duplicates": dup.near_duplicates(index, ds.texts),
        "conflicting_labels": dup.conflicting_labels(groups, ds),
        "pii": dict(sorted(pii.items())),
        "pii_rows": pii_rows,
    }
    codes = detect_languages(ds.texts)
    profile["languages"] = language_summary(codes)
    profile["tokenizer_coverage"] = None if tokenizer is None else {
        "base_model": base_model or _tokenizer_name(tokenizer),
        "per_language": tokenizer_coverage(ds.texts, codes, tokenizer)}
    if ds.multi_label:
        sizes = [len(row) for row in ds.labels]
        profile["labels_per_row"] = {"mean": round(sum(sizes) / len(sizes), 3), "max": max(sizes),
                                     "rows_without_labels": sizes.count(0)}
    if eval_ds is not None:
        profile["leakage"] = dup.leakage(ds, eval_ds, groups, index)
        eval_counts = _label_counts(eval_ds)
        profile["eval"] = {"source": eval_ds.source, "rows": len(eval_ds), "labels": eval_counts,
                           "unseen_labels": sorted(set(eval_counts) - set(counts))}
    profile["warnings"] = list(ds.warnings) + _warnings(profile)
    return profile


def _label_counts(ds: Dataset) -> dict[str, int]:
    if not ds.labels:
        return {}
    counter = Counter(lab for row in ds.labels for lab in row) if ds.multi_label else Counter(ds.labels)
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def _imbalance(counts: dict[str, int]) -> float | None:
    if not counts:
        return None
    return round(max(counts.values()) / min(counts.values()), 3)


def _tokenizer_name(tokenizer: Any) -> str:
    if tokenizer is None:
        return "fallback: whitespace words, one token per CJK character"
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def _length_stats(lengths: list[int], max_model_length: int) -> dict:
    ordered = sorted(lengths)
    top = max(ordered[-1], 1)
    width = max(1, -(-top // HIST_BINS))  # integer-width bins, so edges read as token counts
    bins = -(-(top + 1) // width)
    hist = [0] * bins
    for n in lengths:
        hist[n // width] += 1
    return {
        "min": ordered[0],
        "mean": round(sum(ordered) / len(ordered), 2),
        "p50": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
        "p99": percentile(ordered, 99),
        "max": ordered[-1],
        "over_max_model_length": sum(1 for n in ordered if n > max_model_length),
        "histogram": {"edges": [i * width for i in range(bins + 1)], "counts": hist},
    }


def _warnings(p: dict) -> list[str]:
    out = []
    counts = p["labels"]
    if p["label_col"] is not None and len(counts) == 1:
        out.append(f"only one label ({next(iter(counts))!r}); a classifier needs at least two")
    ratio = p["imbalance_ratio"]
    if ratio is not None and ratio >= IMBALANCE_WARN:
        most, least = next(iter(counts)), list(counts)[-1]
        out.append(f"labels are imbalanced: {most!r} has {counts[most]} rows, {least!r} "
                   f"{counts[least]} (ratio {ratio:g}); use class weights or collect more of the rare labels")
    few = [name for name, n in counts.items() if n < FEW_ROWS]
    if few:
        out.append(f"{len(few)} label(s) have fewer than {FEW_ROWS} rows ({_names(few)}); "
                   "collect more examples or merge them")
    if p["empty_texts"]:
        out.append(f"{p['empty_texts']} empty text(s); clean_dataset drops them")
    exact = p["exact_duplicates"]
    if exact["count"]:
        out.append(f"{exact['count']} row(s) repeat an earlier text; clean_dataset drops the repeats")
    if p["near_duplicates"]["count"]:
        out.append(f"{p['near_duplicates']['count']} near-duplicate pair(s) (≥{dup.NEAR_THRESHOLD:g} "
                   "similar); check them for copies with small edits")
    conflicts = p["conflicting_labels"]
    if conflicts["count"]:
        out.append(f"{conflicts['count']} text(s) appear with different labels ({conflicts['rows']} rows); "
                   "fix the labels or drop them with clean_dataset(drop_conflicts=True)")
    if p["pii"]:
        found = ", ".join(f"{kind}: {n}" for kind, n in p["pii"].items())
        out.append(f"personal data found in {p['pii_rows']} row(s) ({found}); "
                   "clean_dataset(redact=True) replaces it with tokens like [EMAIL]")
    over = p["length"]["over_max_model_length"]
    if over:
        out.append(f"{over} text(s) ({over / p['rows']:.1%}) are longer than {p['max_model_length']} "
                   "tokens and will be truncated")
    if p.get("labels_per_row", {}).get("rows_without_labels"):
        out.append(f"{p['labels_per_row']['rows_without_labels']} multi-label row(s) have no label")
    leak = p.get("leakage")
    if leak and leak["rows"]:
        out.append(f"{leak['rows']} of {leak['eval_rows']} eval row(s) also occur in train "
                   f"(exact {leak['exact']}, normalized {leak['normalized']}, near {leak['near']}); "
                   "evaluation figures will be optimistic, remove them from one side")
    coverage = p.get("tokenizer_coverage")
    if coverage:
        out.extend(coverage_warnings(coverage["per_language"], coverage["base_model"]))
    unseen = p.get("eval", {}).get("unseen_labels")
    if unseen:
        out.append(f"eval has label(s) never seen in train ({_names(unseen)}); the model cannot predict them")
    return out


def _names(names: list[str], shown: int = 5) -> str:
    text = ", ".join(repr(n) for n in names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")
