"""FAQ answering: answers, refusals, versions, the approximate index, bad input, the CLI."""

from __future__ import annotations

import dataclasses
import json

import pytest

from modelshop.apps.artifacts import ArtifactStore
from modelshop.apps.faq import ask, build_kb, check_question, load_index, read_pairs
from modelshop.errors import NotFound, ValidationError
from tests.support import SHOP_FAQ, write_faq

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


def test_threshold_is_calibrated_from_the_knowledge_base(world):
    store = ArtifactStore.from_settings(world)
    meta = store.get("faq", "shop").meta
    cal = meta["calibration"]
    assert cal["method"] == "offtopic-probes" and cal["probes"] >= 50
    assert meta["threshold"] == max(cal["floor"], cal["probe_score_at_quantile"])


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
    from modelshop.apps.faq import embed_texts

    texts = ["how much does postage take", "can I buy a voucher"]
    queries = embed_texts(texts, settings)
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
