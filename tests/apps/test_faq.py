"""FAQ answering: answers, refusals, hybrid ranking (words and meaning), versions, the approximate index, bad
input, the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from modelshop.apps import faq
from modelshop.apps.artifacts import ArtifactStore
from modelshop.apps.faq import FaqIndex, Lexical, ask, build_kb, check_question, load_index, read_pairs
from modelshop.errors import NotFound, ValidationError
from tests.support import SHOP_FAQ, shared_dataset, write_faq

from .conftest import home_settings


def test_answers_a_reworded_question_and_refuses_an_off_topic_one(world):
    out = ask("shop", "how can I send back something I bought?", settings=world)
    assert out["confident"] and out["answers"][0]["id"] == "returns"
    assert set(out["answers"][0]) == {"id", "question", "answer", "score"} and len(out["answers"]) == 3
    assert out["answers"][0]["score"] >= out["threshold"] > out["answers"][-1]["score"] - 1
    exact = ask("shop", "Do you sell gift cards?", 1, settings=world)
    assert exact["answers"][0]["id"] == "gift-cards" and exact["answers"][0]["score"] > 0.95
    off = ask("shop", "What's the weather like in Paris tomorrow?", settings=world)
    assert off["confident"] is False and off["answers"] == [] and off["message"] == "no confident answer"
    assert len(off["suggestions"]) == 3 and "answer" not in off["suggestions"][0]
    # one weak word in common ("can", in the returns answer only) does not outweigh the meaning
    voucher = ask("shop", "can I buy a voucher", settings=world)
    assert (voucher.get("answers") or voucher["suggestions"])[0]["id"] == "gift-cards"


def test_threshold_is_calibrated_from_the_knowledge_base(world):
    store = ArtifactStore.from_settings(world)
    meta = store.get("faq", "shop").meta
    cal = meta["calibration"]
    assert cal["method"] == "offtopic-probes" and cal["probes"] >= 50
    assert meta["threshold"] == max(cal["floor"], cal["probe_score_at_quantile"])
    assert meta["retrieval"]["lexical_weight"] == faq.LEXICAL_WEIGHT and meta["retrieval"]["lexical_scale"] > 0


def test_a_rare_word_decides_where_the_cosine_hesitates(tmp_path):
    # faq_en's 30 ROT entries and a rewording from the tuning half: by the cosine of question + answer
    # "Which works qualify for the ROT deduction?" comes first; "cash" is in the right entry only
    entries = read_pairs(shared_dataset("faq_en", "faq.jsonl"), "q", "a", "id")
    entries = [e for e in entries if e["id"].startswith("rot-")]
    settings = home_settings(tmp_path / "home")
    kb = build_kb(entries, "rot", settings=settings)
    question = "Does paying the builder with cash still give me the ROT deduction?"
    wanted = "Do I get ROT if I pay in cash?"
    out = ask("rot", question, 3, settings=settings)
    assert out["confident"] and out["answers"][0]["question"] == wanted
    index = load_index(kb["path"])
    cosine = index.entry_scores(faq.embed_texts([question], settings), (faq.VIEW_QA,))[0]
    assert index.entries[int(cosine.argmax())]["question"] != wanted


def _random_index(entries: list[dict], meta: dict | None = None) -> FaqIndex:
    """An index whose vectors are noise: what it finds, it finds by words."""
    texts, owners, kinds = faq.views(entries)
    vectors = np.random.default_rng(0).normal(size=(len(texts), 32)).astype(np.float32)
    return FaqIndex(entries, vectors / np.linalg.norm(vectors, axis=1, keepdims=True), owners, kinds, meta or {})


def test_words_match_across_accents_digits_and_chinese():
    assert faq.lexical_text("Bostadsrätt enligt ABS18?") == "Bostadsratt enligt ABS 18?"
    assert faq.lexical_text("怎么修改密码？").split() == ["怎么", "么修", "修改", "改密", "密码", "?"]
    entries = [{"id": "pw", "question": "怎么修改密码？", "answer": "在登录页点击忘记密码，按邮件里的链接设置新密码。"},
               {"id": "ship", "question": "快递多久能到？", "answer": "一般三到五个工作日送达。"},
               {"id": "abs", "question": "What is ABS 18?", "answer": "A standard contract for consumers."},
               {"id": "brf", "question": "May I renovate my bostadsrätt?", "answer": "Yes, with the board's approval."}]
    index = _random_index(entries)
    asked = ["密码忘了怎么办", "bostadsratt renovation", "ABS18 contract"]
    hits = index.search(asked, np.zeros((len(asked), 32), dtype=np.float32), 1)   # the same cosine for all
    assert [entries[row[0][0]]["id"] for row in hits] == ["pw", "brf", "abs"]
    lexical = Lexical(entries)
    assert lexical.scores(["nothing in common"]).tolist() == [[0.0] * 4] and lexical.scale > 0


def test_a_version_built_before_the_hybrid_rank_still_answers(tmp_path):
    entries = [{"id": i, "question": q, "answer": a} for i, q, a in SHOP_FAQ]
    built = _random_index(entries)
    for name, array in (("vectors", built.vectors), ("owners", built.owners), ("kinds", built.kinds)):
        np.save(tmp_path / f"{name}.npy", array)
    (tmp_path / "entries.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    (tmp_path / "artifact.json").write_text(json.dumps({"threshold": 0.5, "embedding_model": "minilm"}))
    index = load_index(str(tmp_path))
    assert index.lexical_weight == faq.LEXICAL_WEIGHT
    assert index.search(["gift cards?"], built.vectors[built.qa_rows[[4]]], 1)[0][0][0] == 4


def test_versions_are_built_aside_and_promotable(tmp_path):
    settings = home_settings(tmp_path / "home")
    data = write_faq(tmp_path / "tiny.jsonl", SHOP_FAQ[:3])
    first = build_kb(data, "tiny", threshold=0.4, settings=settings)
    second = build_kb(write_faq(tmp_path / "tiny2.jsonl", SHOP_FAQ[:4]), "tiny", threshold=0.4, settings=settings)
    assert (first["version"], second["version"]) == (1, 2) and second["entries"] == 4
    store = ArtifactStore.from_settings(settings)
    assert [(r.version, r.stage) for r in store.list("faq")] == [(1, "archived"), (2, "production")]
    assert not any((settings.home / "apps" / ".incoming").iterdir())      # nothing half-built left
    assert ask("tiny", "When can I call you?", 1, settings=settings)["version"] == 2
    assert ask("tiny:1", "How do I reset my password?", 1, settings=settings)["answers"][0]["id"] == "password"
    store.promote("faq", "tiny:1")
    assert ask("tiny", "How do I reset my password?", 1, settings=settings)["version"] == 1


def test_a_large_knowledge_base_answers_from_an_hnsw_index(tmp_path, shop_faq):
    settings = home_settings(tmp_path / "home", faq_exact_max_entries=4)
    kb = build_kb(shop_faq, "big", threshold=0.5, settings=settings)
    assert kb["search"] == "hnsw"
    assert (tmp_path / "home" / "apps" / kb["path"].split("apps/")[1] / "views.faiss").is_file()
    index = load_index(kb["path"])
    for eid, question, _ in SHOP_FAQ:
        assert ask("big", question, 1, settings=settings)["answers"][0]["id"] == eid
    texts = ["how much does postage take", "can I buy a voucher"]
    queries = faq.embed_texts(texts, settings)
    approximate = index.search(texts, queries, 3)
    exact = dataclasses.replace(index, ann=None).search(texts, queries, 3)
    assert [[i for i, _ in row] for row in approximate] == [[i for i, _ in row] for row in exact]
    assert [s for row in approximate for _, s in row] == pytest.approx([s for row in exact for _, s in row])


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(("rows", "cols", "match"), [
    ([{"foo": "a?", "bar": "b"}], {}, "cannot tell which column holds the questions; columns found: foo, bar"),
    ([{"q": "a?", "a": "b"}], {"question_col": "qq"}, 'no column \'qq\' \\(did you mean "q"\\?\\)'),
    ([{"id": 1, "q": "a?", "a": "b"}, {"id": 1, "q": "c?", "a": "d"}], {}, "id '1' appears twice"),
    ([{"q": "", "a": "b"}], {}, "no row has both"),
])
def test_bad_files_are_one_line_errors(tmp_path, rows, cols, match):
    with pytest.raises(ValidationError, match=match):
        read_pairs(_write(tmp_path / "f.jsonl", rows), **cols)


def test_bad_questions_and_names(world, tmp_path):
    with pytest.raises(ValidationError, match="question is empty"):
        check_question("   ")
    with pytest.raises(ValidationError, match="top_k must be"):
        check_question("hi", 0)
    with pytest.raises(NotFound, match='no knowledge base named "shpo" \\(did you mean "shop"\\?\\)'):
        ask("shpo", "hello", settings=world)
    with pytest.raises(NotFound, match='"shop" has no version 9'):
        ask("shop:9", "hello", settings=world)
    with pytest.raises(ValidationError, match="not allowed"):
        build_kb([{"id": "1", "question": "q", "answer": "a"}], "bad name!", settings=world)
    with pytest.raises(ValidationError, match="threshold must be between 0 and 1"):
        build_kb([{"id": "1", "question": "q", "answer": "a"}], "ok", threshold=2, settings=world)


def test_cli_build_ask_and_errors(tmp_path, monkeypatch, capsys):
    from modelshop.cli import main
    from modelshop.settings import get_settings

    monkeypatch.setenv("MODELSHOP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELSHOP_PROGRESS", "false")
    get_settings.cache_clear()
    try:
        data = _write(tmp_path / "kb.jsonl", [{"key": k, "title": q, "text": a} for k, q, a in SHOP_FAQ[:4]])
        main(["apps", "faq", "build", "--name", "cli", "--data", str(data), "--question-col", "title",
              "--answer-col", "text", "--id-col", "key", "--threshold", "0.5"])
        assert "built cli:1: 4 entries" in capsys.readouterr().out
        main(["apps", "faq", "ask", "--name", "cli", "--json", "How long until my parcel gets here?"])
        assert json.loads(capsys.readouterr().out)["answers"][0]["id"] == "shipping-time"
        with pytest.raises(SystemExit) as exit_:
            main(["apps", "faq", "ask", "--name", "nope", "hello"])
        err = capsys.readouterr().err.strip().splitlines()
        assert exit_.value.code == 2 and len(err) == 1 and err[0].startswith('error: no knowledge base named "nope"')
        with pytest.raises(SystemExit):
            main(["apps", "faq", "build", "--name", "x", "--data", str(data)])
        assert "cannot tell which column holds the answers" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
