"""load_dataset: formats, column mapping, multi-label, encodings, and every bad input."""

from __future__ import annotations

import codecs
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from modelshop.data import Dataset, load_dataset
from modelshop.errors import ValidationError
from tests.data.samples import EN, ZH
from tests.support import write_jsonl


def test_csv_english(en_csv: Path) -> None:
    ds = load_dataset(en_csv)
    assert ds.texts == [t for t, _ in EN]
    assert ds.labels == [lab for _, lab in EN]
    assert ds.label_names == ["negative", "positive"]
    assert not ds.multi_label and ds.source == str(en_csv) and ds.warnings == []


def test_jsonl_chinese_columns_detected(zh_jsonl: Path) -> None:
    ds = load_dataset(zh_jsonl)
    assert (ds.text_col, ds.label_col) == ("文本", "标签")
    assert ds.texts[1] == "服务太差了，我要退款" and ds.label_names == ["正面", "负面"]


def test_explicit_columns_and_extra_columns(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [{"id": i, "body_text": t, "y_true": lab, "text": "decoy"}
                                              for i, (t, lab) in enumerate(EN)])
    ds = load_dataset(path, text_col="body_text", label_col="y_true")
    assert ds.texts[0] == EN[0][0] and ds.labels[0] == "positive"


def test_multi_label_jsonl(multi_jsonl: Path) -> None:
    ds = load_dataset(multi_jsonl)
    assert ds.multi_label
    assert ds.labels[0] == ["cancel", "refund"]  # sorted
    assert ds.labels[3] == ["bug", "refund"]  # de-duplicated
    assert ds.label_names == ["bug", "cancel", "refund"]


def test_multi_label_csv_pipe_json_and_python_lists(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text('text,labels\nfirst,a|b\nsecond,"[""b"", ""c""]"\nthird,"[\'c\']"\nfourth,a\n',
                    encoding="utf-8")
    ds = load_dataset(path)
    assert ds.multi_label
    assert ds.labels == [["a", "b"], ["b", "c"], ["c"], ["a"]]


def test_pipe_is_literal_when_multi_label_off(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("text,label\nx,Arts|Culture\ny,News\n", encoding="utf-8")
    ds = load_dataset(path, multi_label=False)
    assert not ds.multi_label and ds.labels == ["Arts|Culture", "News"]


def test_parquet_with_list_labels_and_numbers(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    pd.DataFrame({"sentence": ["a b", "c d", "e f"], "category": [1, 2, 1]}).to_parquet(path)
    ds = load_dataset(path)
    assert ds.labels == ["1", "2", "1"] and ds.text_col == "sentence"
    multi = tmp_path / "m.parquet"
    pd.DataFrame({"text": ["a", "b"], "labels": [["x", "y"], ["y"]]}).to_parquet(multi)
    assert load_dataset(multi).labels == [["x", "y"], ["y"]]


def test_folder_per_label(tmp_path: Path) -> None:
    root = tmp_path / "corpus"
    for label, texts in {"sport": ["goal!", "match report"], "财经": ["股市上涨"]}.items():
        (root / label).mkdir(parents=True)
        for i, text in enumerate(texts):
            (root / label / f"{i}.txt").write_text(text, encoding="utf-8")
    (root / "README.md").write_text("not data", encoding="utf-8")
    ds = load_dataset(root)
    assert ds.texts == ["goal!", "match report", "股市上涨"]
    assert ds.labels == ["sport", "sport", "财经"]
    assert any("ignored 1 file" in w for w in ds.warnings)


def test_json_array_tsv_and_utf8_bom(tmp_path: Path) -> None:
    arr = tmp_path / "a.json"
    arr.write_text(json.dumps([{"text": "x", "label": "p"}, {"text": "y", "label": "q"}]), encoding="utf-8")
    assert load_dataset(arr).labels == ["p", "q"]
    tsv = tmp_path / "a.tsv"
    tsv.write_bytes(codecs.BOM_UTF8 + "text\tlabel\n你好, 世界\tgreet\n".encode())
    ds = load_dataset(tsv)
    assert ds.texts == ["你好, 世界"] and ds.text_col == "text"  # BOM not glued to the header


def test_gbk_file_is_decoded_with_a_note(tmp_path: Path) -> None:
    path = tmp_path / "gbk.csv"
    rows = "文本,标签\n" + "".join(f"{t},{lab}\n" for t, lab in ZH)
    path.write_bytes(rows.encode("gbk"))
    ds = load_dataset(path)
    assert ds.texts == [t for t, _ in ZH]
    assert any("GB18030" in w and "UTF-8" in w for w in ds.warnings)


def test_empty_labels_and_texts_dropped_with_warning(tmp_path: Path) -> None:
    path = tmp_path / "holes.csv"
    path.write_text("text,label\na,x\nb,\n,y\nd,  \ne,y\nf,NaN\ng,None\n", encoding="utf-8")
    ds = load_dataset(path)
    assert ds.texts == ["a", "e", "g"] and ds.labels == ["x", "y", "None"]
    assert "dropped 3 row(s) with an empty 'label' label (rows 2, 4, 6)" in ds.warnings[0]
    assert "dropped 1 row(s) with an empty 'text' text (rows 3)" in ds.warnings[1]
    nan = tmp_path / "nan.parquet"
    pd.DataFrame({"text": ["a", "b"], "label": ["x", None]}).to_parquet(nan)
    assert load_dataset(nan).labels == ["x"]


def test_unlabelled_allowed_when_not_required(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "u.jsonl", [{"text": "just text"}, {"text": "more"}])
    ds = load_dataset(path, require_labels=False)
    assert ds.texts == ["just text", "more"] and ds.labels == [] and not ds.has_labels


def test_limit(en_csv: Path, zh_jsonl: Path) -> None:
    assert len(load_dataset(en_csv, limit=2)) == 2
    assert load_dataset(zh_jsonl, limit=3).texts == [t for t, _ in ZH[:3]]


def test_one_megabyte_text_loads(tmp_path: Path) -> None:
    big = ("lorem ipsum dolor sit amet 数据 " * 40_000)[:1_000_000]
    path = write_jsonl(tmp_path / "big.jsonl", [{"text": big, "label": "a"}, {"text": "small", "label": "b"}])
    csv = tmp_path / "big.csv"
    pd.DataFrame({"text": [big, "small"], "label": ["a", "b"]}).to_csv(csv, index=False)
    assert len(load_dataset(path).texts[0]) == 1_000_000
    assert len(load_dataset(csv).texts[0]) == 1_000_000


def test_dataset_fingerprint_and_subset() -> None:
    ds = Dataset(texts=["a", "b", "c"], labels=["x", "y", "x"], multi_label=False)
    same = Dataset(texts=["a", "b", "c"], labels=["x", "y", "x"], multi_label=False, source="elsewhere")
    assert ds.fingerprint() == same.fingerprint() and len(ds.fingerprint()) == 64
    assert ds.subset([2, 1, 0]).fingerprint() != ds.fingerprint()  # order-sensitive
    relabelled = Dataset(texts=["a", "b", "c"], labels=["x", "y", "y"], multi_label=False)
    assert relabelled.fingerprint() != ds.fingerprint()
    assert ds.subset([2, 0]).texts == ["c", "a"] and ds.subset([2, 0]).labels == ["x", "x"]
    # pinned format: it keys model lineage, so it must not change between releases
    assert ds.fingerprint() == hashlib.sha256(b'["a", "x"]\n["b", "y"]\n["c", "x"]\n').hexdigest()


# ---- bad input: one clear line each ----------------------------------------------------------

def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"nope\.csv not found; check the path"):
        load_dataset(tmp_path / "nope.csv")


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(ValidationError, match=r"unsupported file type '\.xlsx'; use one of \.csv, \.tsv, \.jsonl"):
        load_dataset(path)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("empty.csv", "", r"empty\.csv is empty"),
    ("blank.jsonl", "\n  \n", r"blank\.jsonl is empty"),
    ("header.csv", "text,label\n", r"header\.csv has a header \(text, label\) but no rows"),
    ("arr.json", "[]", r"arr\.json has no rows"),
])
def test_empty_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValidationError, match=message):
        load_dataset(path)


def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "corpus" / "pos").mkdir(parents=True)
    with pytest.raises(ValidationError, match=r"folder corpus has no LABEL/\*\.txt files"):
        load_dataset(tmp_path / "corpus")


def test_misspelt_column_suggests_nearest(en_csv: Path) -> None:
    with pytest.raises(ValidationError,
                       match=r"has no column 'lable' \(did you mean \"label\"\?\); columns found: text, label"):
        load_dataset(en_csv, label_col="lable")


def test_undetectable_column_lists_columns(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "odd.jsonl", [{"payload": "a", "kind": "b"}])
    with pytest.raises(ValidationError,
                       match=r"which column holds the text; columns found: payload, kind; pass text_col"):
        load_dataset(path)
    with pytest.raises(ValidationError,
                       match=r"which column holds the label; columns found: payload, kind; pass label_col"):
        load_dataset(path, text_col="payload")


def test_misspelt_column_found_by_auto_detection(tmp_path: Path) -> None:
    path = tmp_path / "typo.csv"
    path.write_text("text,lable\nhi,x\n", encoding="utf-8")
    with pytest.raises(ValidationError,
                       match=r"holds the label \(did you mean \"lable\"\?\); columns found: text, lable"):
        load_dataset(path)


def test_semicolon_csv_gets_a_separator_hint(tmp_path: Path) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("text;label\na;b\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="another separator than a comma"):
        load_dataset(path)


def test_latin1_file_names_offset_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\nnaïve café,x\n".encode("latin-1"))
    with pytest.raises(ValidationError, match=r"latin\.csv is not UTF-8: byte 0xef at byte offset 13 \(line 2\) "
                                              r"is invalid; re-save it as UTF-8"):
        load_dataset(path)


def test_malformed_json_line_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": }\n', encoding="utf-8")
    with pytest.raises(ValidationError, match=r"bad\.jsonl line 3 is not valid JSON"):
        load_dataset(path)
    path.write_text('{"text": "a", "label": "x"}\n["not", "an", "object"]\n', encoding="utf-8")
    with pytest.raises(ValidationError, match=r"line 2 is a JSON list, not an object"):
        load_dataset(path)


def test_all_labels_empty_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nolabels.csv"
    path.write_text("text,label\na,\nb,\n", encoding="utf-8")
    with pytest.raises(ValidationError, match=r"every row has an empty 'label' column"):
        load_dataset(path)


def test_all_texts_empty_is_an_error(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"text": "", "label": "a"}, {"text": None, "label": "b"}])
    with pytest.raises(ValidationError, match=r"every row has an empty 'text' text"):
        load_dataset(path)


def test_bad_list_label_and_multi_label_off(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text('text,labels\nx,"[a, b"]\n', encoding="utf-8")
    with pytest.raises(ValidationError, match=r"row 1: label .* looks like a list but does not parse"):
        load_dataset(path)
    multi = write_jsonl(tmp_path / "m.jsonl", [{"text": "x", "label": ["a", "b"]}])
    with pytest.raises(ValidationError, match=r"row 1 has 2 labels but multi_label is off"):
        load_dataset(multi, multi_label=False)


def test_bad_csv_quoting_and_limit(tmp_path: Path, en_csv: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text("text,label\na,b\nc,d,e,f\n", encoding="utf-8")
    with pytest.raises(ValidationError, match=r"q\.csv is not valid CSV \(.*\); quote fields"):
        load_dataset(path)
    with pytest.raises(ValidationError, match="limit must be a positive whole number"):
        load_dataset(en_csv, limit=0)


def test_broken_parquet(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(ValidationError, match=r"x\.parquet is not a readable Parquet file"):
        load_dataset(path)
