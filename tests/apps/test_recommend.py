"""Recommendation on a small world of three topics: personal, cold-start users and items, HTTP, errors."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from fastapi.testclient import TestClient

from modelshop.apps.recdata import read_interactions, read_items
from modelshop.apps.recommend import hit_ndcg, recommend
from modelshop.errors import NotFound, ValidationError
from tests.support import AUTH

from .conftest import home_settings

TOPICS = {
    "space": ["Rocket launch guide", "Mars rover stories", "Astronomy for beginners", "The moon landing",
              "Telescopes explained", "Life on the space station", "Black holes and stars", "Satellites overhead",
              "Comets and asteroids"],
    "cooking": ["Italian pasta recipes", "Baking sourdough bread", "Quick vegetarian dinners",
                "Knife skills in the kitchen",
                "French pastry basics", "Spicy curry cookbook", "Grilling steak perfectly", "Soups for winter",
                "Home made pizza dough"],
    "football": ["World cup history", "Football tactics explained", "Great goalkeepers", "Training like a striker",
                 "The premier league season", "Famous football stadiums", "Coaching youth football", "Penalty kicks",
                 "Football transfer market"],
}


@pytest.fixture(scope="module")
def shelf(tmp_path_factory):
    """Items (the last of each topic never interacted with) and 45 users who stay within one topic."""
    folder = tmp_path_factory.mktemp("rec")
    with open(folder / "items.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["item_id", "title", "tags"])
        for topic, titles in TOPICS.items():
            for n, title in enumerate(titles):
                w.writerow([f"{topic}-{n}", title, topic])
    rng = np.random.default_rng(0)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(45):
        topic = list(TOPICS)[u % 3]
        for t, n in enumerate(rng.choice(8, size=5, replace=False)):      # item 8 of each topic: nobody's
            lines.append(f"u{u}\t{topic}-{n}\t4\t{1000 * u + t}")
    (folder / "log.inter").write_text("\n".join(lines) + "\n")
    settings = home_settings(tmp_path_factory.mktemp("rec-home"))
    from modelshop.apps.recommend import fit_recommender

    fitted = fit_recommender(folder / "items.csv", folder / "log.inter", "shelf", settings=settings)
    return settings, fitted, folder


def test_fit_reads_files_and_chooses_its_settings(shelf):
    settings, fitted, folder = shelf
    assert (fitted["version"], fitted["users"], fitted["items"], fitted["interactions"]) == (1, 45, 27, 225)
    assert fitted["validation"]["users"] == 45 and set(fitted["params"]) == {"lam", "half_life", "w_content", "w_pop"}
    inter = read_interactions(folder / "log.inter")
    assert list(inter.users[:2]) == ["u0", "u0"] and inter.times[1] == 1.0


def test_known_user_gets_unseen_items_of_their_topic_including_a_new_one(shelf):
    settings, _, _ = shelf
    out = recommend("u0", 4, settings=settings)       # u0 reads space; 4 space items are unseen, one is new
    assert out["strategy"] == "personal" and out["known_user"]
    ids = [i["item_id"] for i in out["items"]]
    assert all(i.startswith("space-") for i in ids) and "space-8" in ids
    seen = {f"space-{n}" for n in np.random.default_rng(0).choice(8, size=5, replace=False)}
    assert not seen & set(ids)


def test_cold_start_users(shelf):
    settings, _, _ = shelf
    popular = recommend("someone-new", 5, settings=settings)
    assert popular["strategy"] == "cold-start: popular" and not popular["known_user"]
    counts = [i["interactions"] for i in popular["items"]]
    assert counts == sorted(counts, reverse=True) and counts[0] > 0
    liked = recommend("someone-new", 3, like=["cooking-0"], settings=settings)
    assert liked["strategy"] == "cold-start: popular + content"
    assert all(i["item_id"].startswith("cooking-") for i in liked["items"]) and "cooking-0" not in str(liked["items"])
    asked = recommend("someone-new", 3, query="stars, planets and rockets", settings=settings)
    assert all(i["item_id"].startswith("space-") for i in asked["items"])


def test_http_and_errors(shelf, tmp_path):
    settings, _, folder = shelf
    from modelshop.platform import build_app

    app = build_app(settings)
    with TestClient(app) as client:
        ok = client.get("/apps/recommend/u1?k=3", headers=AUTH)
        assert ok.status_code == 200 and [i["item_id"][:7] for i in ok.json()["items"]] == ["cooking"] * 3
        assert client.get("/apps/recommend/u1", headers={}).status_code == 401
        bad = client.get("/apps/recommend/u1?model=shelff", headers=AUTH)
        assert bad.status_code == 404 and 'did you mean "shelf"' in bad.json()["error"]
        assert client.get("/apps/recommend/u1?k=0", headers=AUTH).status_code == 422
        assert client.get("/apps/recommend/new?like=nothing-1", headers=AUTH).status_code == 404
        # tokens metered as the embedding model reads them, and only when it reads q: for a user without history
        known = client.get("/apps/recommend/u1?k=3&q=rockets and planets", headers=AUTH)
        assert known.json()["strategy"] == "personal" and known.headers["x-compute-tokens"] == "0"
        new = client.get("/apps/recommend/someone-new?k=3&q=rockets and planets", headers=AUTH)
        assert new.json()["strategy"] == "cold-start: popular + content"
        embedder = app.state.modelshop.service.pool._embedder    # the server's: loaded by this call
        read = sum(e.tokens for e in embedder.runner.prepare([("rockets and planets", None)], True))
        assert new.headers["x-compute-tokens"] == str(read) and new.headers["x-compute-characters"] == "19"
    with pytest.raises(ValidationError, match="k must be"):
        recommend("u1", 0, settings=settings)
    with pytest.raises(NotFound, match='no item "space-99"'):
        recommend("x", like=["space-99"], settings=settings)
    (tmp_path / "i.csv").write_text("sku_code,label\n1,a\n")
    with pytest.raises(ValidationError,
                       match="cannot tell which column holds the item ids; columns found: sku_code, label"):
        read_items(tmp_path / "i.csv")
    with pytest.raises(ValidationError, match="no column 'titel' \\(did you mean \"title\"\\?\\)"):
        read_items(folder / "items.csv", text_cols=["titel"])
    (tmp_path / "x.inter").write_text("who:token\titem_id:token\nu\t1\n")
    with pytest.raises(ValidationError, match="user ids; columns found: who, item_id; pass --user-col"):
        read_interactions(tmp_path / "x.inter")


def test_hit_rate_and_ndcg():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1]])
    hr, ndcg = hit_ndcg(scores, np.array([2, 2]), k=2)           # second place, then a miss
    assert hr == 0.5 and ndcg == pytest.approx(0.5 / np.log2(3))
