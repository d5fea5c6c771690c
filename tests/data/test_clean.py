"""normalize_text and clean_dataset: what changes, what is dropped, what is counted."""

from __future__ import annotations

from modelshop.data import Dataset, clean_dataset, normalize_text


def test_normalize_text() -> None:
    assert normalize_text("  Ｈｅｌｌｏ\u3000ｗｏｒｌｄ！ １２３ ") == "Hello world! 123"
    assert normalize_text("a\u200bb\t\tc\r\n\nd\x00e") == "ab c d e"
    assert normalize_text("ﬁne ①") == "fine 1"
    assert normalize_text("中文，标点。") == "中文,标点。"


def test_clean_dataset_counts_everything() -> None:
    ds = Dataset(
        texts=["Call me: 13812345678", "call me:  13912345678", "Ｈｅｌｌｏ", "Hello", "  ", "same text",
               "same text", "mail bob@x.org", "unique"],
        labels=["a", "a", "b", "b", "c", "x", "y", "d", "e"],
        multi_label=False,
        source="t.jsonl",
        warnings=["dropped 1 row(s) with an empty 'label' label (rows 3); fill them in"],
    )
    cleaned, report = clean_dataset(ds)
    assert cleaned.texts == ["Call me: [PHONE]", "call me: [PHONE]", "Hello", "same text", "same text",
                             "mail [EMAIL]", "unique"]
    assert cleaned.labels == ["a", "a", "b", "x", "y", "d", "e"]
    assert report == {
        "rows_in": 9, "rows_out": 7, "normalized": 3, "pii_redacted": {"email": 1, "phone": 2},
        "empty_dropped": 1, "duplicates_dropped": 1, "conflicting_texts": 1, "conflicts_dropped": 0,
        "load_warnings": ds.warnings,
    }
    assert len(ds) == 9  # the input is not modified


def test_clean_options() -> None:
    ds = Dataset(texts=["a@b.com", "a@b.com", "dup", "dup", ""], labels=["x", "x", "p", "q", "z"],
                 multi_label=False)
    kept, report = clean_dataset(ds, redact=False, drop_duplicates=False, drop_empty=False)
    assert kept.texts == ds.texts and report["pii_redacted"] == {}
    strict, report = clean_dataset(ds, drop_conflicts=True)
    assert strict.texts == ["[EMAIL]"] and report["conflicts_dropped"] == 2


def test_multi_label_duplicates_compare_label_sets() -> None:
    ds = Dataset(texts=["t", "t", "t"], labels=[["a", "b"], ["a", "b"], ["a"]], multi_label=True)
    cleaned, report = clean_dataset(ds)
    assert cleaned.labels == [["a", "b"], ["a"]] and report["conflicting_texts"] == 1
