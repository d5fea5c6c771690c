"""The languages of a dataset (lingua) and the base model's tokenizer coverage of each, in the profile,
the `data profile` CLI and the HTML report; the warning for a language the tokenizer covers badly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelshop.data import detect_languages, load_dataset, profile_dataset, profile_file, write_report
from modelshop.data.languages import UNDETERMINED, tokenizer_coverage

EN = ["Where is my parcel? It was due on Monday.", "I want a refund for the broken kettle.",
      "How do I change the password of my account?", "The courier left the box at the wrong address.",
      "Please cancel my subscription and send me an invoice.", "Your support team was very helpful, thank you!"]
ZH = ["我的快递三天了还没到", "怎么修改密码？", "水壶坏了，我要退款。", "快递员把包裹送错地址了",
      "请取消我的订阅并开发票", "客服很耐心，谢谢你们！"]
RU = ["Где мой заказ? Уже неделя прошла.", "Верните деньги за сломанный чайник, пожалуйста."]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from modelshop.train.base_models import minilm_path

    return AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture
def mixed(tmp_path):
    """English and Chinese messages, interleaved, as users bring them."""
    rows = [{"text": t, "label": lab} for pair in zip(EN, ZH, strict=True) for t, lab in zip(pair, ("en", "zh"))]
    return write_jsonl(tmp_path / "mixed.jsonl", rows)


def test_the_profile_reports_each_language_and_warns_about_chinese_under_minilm(mixed, minilm_tokenizer):
    p = profile_file(mixed, tokenizer=minilm_tokenizer, base_model="minilm")
    langs = p["languages"]
    assert langs["counts"] == {"en": 6, "zh": 6} and langs["shares"] == {"en": 0.5, "zh": 0.5}
    assert langs["names"] == {"en": "English", "zh": "Chinese"} and langs["detector"].startswith("lingua ")
    assert langs["per_text"] == ["en", "zh"] * 6  # one code per row, in file order
    cov = p["tokenizer_coverage"]
    assert cov["base_model"] == "minilm" and list(cov["per_language"]) == ["en", "zh"]
    en, zh = cov["per_language"]["en"], cov["per_language"]["zh"]
    assert en["unk"] == 0 and not en["poor"] and 0.15 < en["pieces_per_char"] < 0.4
    # the English vocabulary knows a few hundred Chinese characters: most of these come out as [UNK]
    assert zh["unk_rate"] > 0.4 and zh["poor"] and zh["texts"] == 6
    assert zh["pieces"] == sum(len(minilm_tokenizer.tokenize(t)) for t in ZH)
    assert zh["unk"] == sum(minilm_tokenizer.tokenize(t).count("[UNK]") for t in ZH)
    warned = [w for w in p["warnings"] if w.startswith("zh ")]
    assert warned == [f"zh (Chinese, 6 texts): {zh['unk_rate']:.0%} of pieces are [UNK] for minilm (an English "
                      "model): expect poor results; use a Chinese or multilingual checkpoint, or tfidf"]
    assert not any(w.startswith("en ") for w in p["warnings"])


def rows(tmp_path, texts: list[str]):
    """A labelled dataset of `texts`, loaded from a JSONL file as users bring it."""
    return load_dataset(write_jsonl(tmp_path / "rows.jsonl", [{"text": t, "label": str(i % 2)}
                                                              for i, t in enumerate(texts)]))


def test_letters_spelt_out_one_by_one_are_poor_coverage_too(minilm_tokenizer, tmp_path):
    """Russian under minilm has no [UNK], but nearly one piece per letter: the second kind of warning."""
    ds = rows(tmp_path, RU + EN[:2])
    p = profile_dataset(ds, minilm_tokenizer, base_model="minilm")
    ru = p["tokenizer_coverage"]["per_language"]["ru"]
    assert ru["unk"] == 0 and ru["pieces_per_char"] > 0.8 and ru["poor"]
    assert any(w.startswith("ru (Russian, 2 texts): ") and "pieces per character for minilm (an English model)" in w
               and w.endswith("use a Russian or multilingual checkpoint, or tfidf") for w in p["warnings"])


def test_without_a_tokenizer_languages_are_reported_and_coverage_is_skipped(mixed):
    p = profile_file(mixed)
    assert p["languages"]["counts"] == {"en": 6, "zh": 6}
    assert p["tokenizer_coverage"] is None and not any("[UNK]" in w for w in p["warnings"])


def test_one_language_and_no_letters(minilm_tokenizer, tmp_path):
    p = profile_dataset(rows(tmp_path, EN), minilm_tokenizer, base_model="minilm")
    assert p["languages"]["counts"] == {"en": 6} and not p["tokenizer_coverage"]["per_language"]["en"]["poor"]
    assert not any("pieces" in w for w in p["warnings"])
    assert detect_languages(["12345 ???", "", "👍👍"]) == [UNDETERMINED] * 3
    assert detect_languages([]) == []
    assert tokenizer_coverage(["12345"], [UNDETERMINED], minilm_tokenizer) == {}  # nothing to measure


def test_a_short_ambiguous_text_takes_the_language_of_the_rest():
    """lingua alone calls "agent" French; among English messages it is English."""
    assert detect_languages(["agent"]) == ["fr"]
    assert detect_languages(["agent"] + EN) == ["en"] * 7
    # a confident call stays: a French sentence among English ones is French
    assert detect_languages(["Bonjour, je voudrais être remboursé de ma commande."] + EN)[0] == "fr"


def test_the_cli_prints_languages_and_the_warning(mixed, settings):
    from modelshop.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["data", "profile", str(mixed), "--base-model", "minilm"])
    assert out.exit_code == 0, out.output
    assert "languages: en 6 (50.0%), zh 6 (50.0%)" in out.output
    assert "tokenizer coverage (minilm): en 0.0% [UNK]" in out.output
    assert "warning: zh (Chinese, 6 texts): " in out.output and "for minilm (an English model)" in out.output
    as_json = json.loads(runner.invoke(app, ["data", "profile", str(mixed), "--base-model", "tfidf", "--json"]).output)
    assert as_json["languages"]["counts"] == {"en": 6, "zh": 6} and as_json["tokenizer_coverage"] is None


def test_the_html_report_has_the_languages_table(mixed, minilm_tokenizer, tmp_path):
    p = profile_file(mixed, tokenizer=minilm_tokenizer, base_model="minilm")
    html = write_report(p, tmp_path / "report").read_text(encoding="utf-8")
    section = html[html.index("<h2>Languages</h2>"):html.index("<h2>Token lengths</h2>")]
    assert "zh (Chinese) ⚠ poorly covered" in section and "en (English)</td>" in section
    assert f"{100 * p['tokenizer_coverage']['per_language']['zh']['unk_rate']:.1f}%" in section
