"""Recommendation: collaborative filtering (EASE) blended with item text embeddings and popularity.

    score(user, item) = z(cf) + w_content · z(content) + w_pop · z(log popularity)

* cf: EASE (Steck 2019), a closed-form item–item model on implicit feedback, over the
  `recommend_cf_max_items` most-interacted items. The user's history is weighted by recency
  (half-life in interactions), because what someone did last says most about what they do next.
* content: cosine between the items' minilm text embeddings (title, year, genres/tags, description)
  and the recency-weighted mean embedding of the user's history.
* z(): each score standardised over the candidate items, so the weights mean the same for every user.
The regularisation, half-life and weights are chosen at fit time on the data itself: each user's
last interaction is held out, every setting of a small grid is scored by HR@10, the best is kept,
and the model is refitted on everything.

Cold start: a user with no history gets popular items, blended with content when the request
names items they liked (`like`) or a text (`query`); an item nobody interacted with yet is
ranked by its content score in place of the cf score.
"""

from __future__ import annotations

import functools
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modelshop.apps.artifacts import ArtifactStore, check_name
from modelshop.apps.recdata import Interactions, Items, read_interactions, read_items
from modelshop.errors import NotFound, ValidationError, did_you_mean
from modelshop.inference.models import Models
from modelshop.settings import Settings, get_settings

KIND = "recommender"
GRID = {"lam": (100.0, 400.0), "half_life": (None, 10.0, 30.0), "w_content": (0.0, 0.25, 0.5), "w_pop": (0.0, 0.2)}
VALIDATION_USERS = 3000     # most users scored per grid point (bounded fit time)


def ease(x: np.ndarray, lam: float) -> np.ndarray:
    """EASE item–item weights B (zero diagonal) from a users × items 0/1 matrix."""
    gram = (x.T @ x).astype(np.float64)
    gram[np.diag_indices_from(gram)] += lam
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return b.astype(np.float32)


def _z(s: np.ndarray) -> np.ndarray:
    return (s - s.mean(axis=-1, keepdims=True)) / (s.std(axis=-1, keepdims=True) + 1e-9)


def hit_ndcg(scores: np.ndarray, targets: np.ndarray, k: int = 10) -> tuple[float, float]:
    """HR@k and NDCG@k of one held-out item per row (seen items already set to -inf)."""
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, 1).argsort(axis=1)[:, ::-1]
    top = np.take_along_axis(top, order, 1)
    where = top == targets[:, None]
    hit = where.any(axis=1)
    ndcg = np.where(hit, 1.0 / np.log2(where.argmax(axis=1) + 2), 0.0)
    return float(hit.mean()), float(ndcg.mean())


@dataclass
class Model:
    """What `fit` learns and `recommend` reads; also saved as the files of a recommender version."""

    item_ids: list[str]
    titles: list[str]
    user_ids: list[str]
    indptr: np.ndarray      # user u's history: items[indptr[u]:indptr[u+1]], oldest first
    history: np.ndarray
    counts: np.ndarray      # interactions per item
    cf_items: np.ndarray    # the items EASE covers
    b: np.ndarray           # EASE weights over cf_items
    emb: np.ndarray         # item text embeddings (zero rows for items without text)
    params: dict

    @functools.cached_property
    def user_pos(self) -> dict[str, int]:
        return {u: n for n, u in enumerate(self.user_ids)}

    def weights(self, hist: list[np.ndarray]) -> np.ndarray:
        """users × items recency weights of their histories."""
        w = np.zeros((len(hist), len(self.item_ids)), dtype=np.float32)
        hl = self.params.get("half_life")
        for r, h in enumerate(hist):
            age = np.arange(len(h))[::-1]
            w[r, h] = 1.0 if hl is None else 0.5 ** (age / hl)
        return w

    def scores(self, hist: list[np.ndarray], profile: np.ndarray | None = None) -> np.ndarray:
        """Blended scores (users × items); seen items get -inf."""
        p = self.params
        w = self.weights(hist)
        cf = np.zeros_like(w)
        cf[:, self.cf_items] = w[:, self.cf_items] @ self.b
        prof = w @ self.emb if profile is None else profile
        prof = prof / (np.linalg.norm(prof, axis=1, keepdims=True) + 1e-9)
        content = _z(prof @ self.emb.T)
        in_cf = np.zeros(len(self.item_ids), dtype=bool)
        in_cf[self.cf_items] = True
        s = np.where(in_cf, _z(cf), content) + p["w_content"] * content + p["w_pop"] * _z(np.log1p(self.counts))[None]
        s[w > 0] = -np.inf
        return s


def _grouped(inter: Interactions, item_index: dict[str, int]) -> tuple[list[str], list[np.ndarray]]:
    """Each user's distinct items, oldest first (a repeat counts at its last time)."""
    order = np.lexsort((inter.times, inter.users))
    users, items = inter.users[order], np.array([item_index[i] for i in inter.items[order]])
    ids, starts = np.unique(users, return_index=True)
    ends = np.r_[starts[1:], len(users)]
    hist = []
    for a, b in zip(starts, ends):
        seq = items[a:b][::-1]
        _, first = np.unique(seq, return_index=True)   # latest occurrence of each item
        hist.append(seq[np.sort(first)][::-1].astype(np.int32))
    return list(ids), hist


def fit(items: Items, inter: Interactions, *, settings: Settings, grid: dict | None = None) -> tuple[Model, dict]:
    """Learn a `Model` (settings chosen on held-out last interactions); returns it and the validation figures."""
    from modelshop.apps.faq import embed_texts

    ids = list(items.ids) + sorted(set(inter.items) - set(items.ids))   # interacted items without a row
    texts = list(items.texts) + [""] * (len(ids) - len(items.ids))
    titles = list(items.titles) + ids[len(items.ids):]
    index = {i: n for n, i in enumerate(ids)}
    user_ids, hist = _grouped(inter, index)
    has_text = [n for n, t in enumerate(texts) if t]
    if has_text:
        vectors = embed_texts([texts[n] for n in has_text], settings)
        emb = np.zeros((len(ids), vectors.shape[1]), dtype=np.float32)
        emb[has_text] = vectors
    else:
        emb = np.zeros((len(ids), 1), dtype=np.float32)
    grid = grid or GRID
    val_users = [u for u, h in enumerate(hist) if len(h) >= 3][:VALIDATION_USERS]
    report = {"users": len(user_ids), "items": len(ids), "interactions": int(sum(len(h) for h in hist))}
    # too few users to choose on held-out data: a little text similarity helps small catalogues
    best = {"lam": grid["lam"][0], "half_life": None, "w_content": 0.25, "w_pop": 0.0}
    if len(val_users) >= 10:
        held = set(val_users)
        train_hist = [h[:-1] if u in held else h for u, h in enumerate(hist)]
        targets = np.array([hist[u][-1] for u in val_users])
        results = []
        for lam in grid["lam"]:
            model = _model(ids, titles, user_ids, train_hist, emb, lam, settings)
            for hl, wc, wp in itertools.product(grid["half_life"], grid["w_content"], grid["w_pop"]):
                model.params = {"lam": lam, "half_life": hl, "w_content": wc, "w_pop": wp}
                hr, ndcg = hit_ndcg(model.scores([train_hist[u] for u in val_users]), targets)
                results.append((hr, ndcg, dict(model.params)))
        hr, ndcg, best = max(results, key=lambda r: (r[0], r[1]))
        report["validation"] = {"users": len(val_users), "hr@10": round(hr, 4), "ndcg@10": round(ndcg, 4)}
    model = _model(ids, titles, user_ids, hist, emb, best["lam"], settings)
    model.params = best
    report["params"] = best
    return model, report


def _model(ids, titles, user_ids, hist, emb, lam, settings) -> Model:
    counts = np.zeros(len(ids), dtype=np.int64)
    for h in hist:
        counts[h] += 1
    cf_items = np.sort(np.argsort(-counts, kind="stable")[:settings.recommend_cf_max_items])
    cf_items = cf_items[counts[cf_items] > 0]
    x = np.zeros((len(hist), len(cf_items)), dtype=np.float32)
    col = np.full(len(ids), -1)
    col[cf_items] = np.arange(len(cf_items))
    for u, h in enumerate(hist):
        x[u, col[h][col[h] >= 0]] = 1.0
    indptr = np.r_[0, np.cumsum([len(h) for h in hist])].astype(np.int64)
    flat = np.concatenate(hist).astype(np.int32) if hist else np.zeros(0, np.int32)
    return Model(ids, titles, list(user_ids), indptr, flat, counts, cf_items, ease(x, lam), emb, {})


FILES = ("indptr", "history", "counts", "cf_items", "b", "emb")


def fit_recommender(items_path: str | Path, interactions_path: str | Path, name: str, *,
                    item_col: str | None = None, user_col: str | None = None, time_col: str | None = None,
                    text_cols: list[str] | None = None, settings: Settings | None = None) -> dict:
    """Read the files, fit, and register version N of recommender `name`; returns its figures."""
    settings = settings or get_settings()
    check_name(name, "recommender name")
    items = read_items(items_path, id_col=item_col, text_cols=text_cols)
    inter = read_interactions(interactions_path, user_col=user_col, item_col=item_col, time_col=time_col)
    model, report = fit(items, inter, settings=settings)
    store = ArtifactStore.from_settings(settings)
    build = store.incoming_dir()
    for f in FILES:
        np.save(build / f"{f}.npy", getattr(model, f))
    (build / "ids.json").write_text(json.dumps({"items": model.item_ids, "titles": model.titles,
                                                "users": model.user_ids}, ensure_ascii=False))
    meta = {**report, "embedding_model": settings.embedding_model, "items_file": str(items_path),
            "interactions_file": str(interactions_path)}
    row = store.register(KIND, name, build, meta)
    return {"name": row.name, "version": row.version, **meta}


def resolve(model: str | None, settings: Settings | None = None):
    """The recommender version `model` names (NAME or NAME:VERSION); None: the only one there is."""
    store = ArtifactStore.from_settings(settings)
    if model is None:
        names = store.names(KIND)
        if len(names) != 1:
            raise ValidationError("name the recommender with ?model=NAME" + (
                f" (one of {', '.join(names)})" if names else "; none exists yet: `modelshop apps recommend fit`"))
        model = names[0]
    return store.get(KIND, model)


@functools.lru_cache(maxsize=4)
def load_model(folder: str) -> Model:
    path = Path(folder)
    ids = json.loads((path / "ids.json").read_text())
    arrays = {f: np.load(path / f"{f}.npy") for f in FILES}
    params = json.loads((path / "artifact.json").read_text())["params"]
    return Model(ids["items"], ids["titles"], ids["users"], params=params, **arrays)


def embeds_query(user: str, query: str | None, row, settings: Settings | None = None) -> bool:
    """Whether `recommend` embeds `query` for `user` with version `row`: only for a user without history."""
    if not query:
        return False
    return user not in load_model(str(ArtifactStore.from_settings(settings).path(row))).user_pos


def recommend(user: str, k: int = 10, *, model: str | None = None, like: list[str] | None = None,
              query: str | None = None, settings: Settings | None = None, models: Models | None = None) -> dict:
    """Top-k items for `user` (unseen ones), with cold-start handling; see the module docstring. `query` is
    embedded (by `models`, default: this process's own) only for a user without history."""
    settings = settings or get_settings()
    if not isinstance(k, int) or not 1 <= k <= 100:
        raise ValidationError(f"k must be a whole number from 1 to 100, got {k!r}")
    row = resolve(model, settings)
    m = load_model(str(ArtifactStore.from_settings(settings).path(row)))
    index = {i: n for n, i in enumerate(m.item_ids)}
    liked = []
    for item in like or []:
        if item not in index:
            raise NotFound(f'no item "{item}" in recommender {row.ref}{did_you_mean(item, m.item_ids[:5000])}')
        liked.append(index[item])
    u = m.user_pos.get(user)
    if u is not None:
        hist, strategy = m.history[m.indptr[u]:m.indptr[u + 1]], "personal"
        hist = np.r_[hist, [i for i in liked if i not in set(hist)]].astype(np.int32)
        scores = m.scores([hist])[0]
    else:
        hist = np.array(liked, dtype=np.int32)
        scores, strategy = _z(np.log1p(m.counts).astype(np.float32)), "cold-start: popular"
        profile = None
        if query:
            from modelshop.apps.faq import embed_texts

            profile = embed_texts([query], settings, row.meta.get("embedding_model"), models=models)
        if len(hist):
            liked_profile = m.weights([hist]) @ m.emb
            profile = liked_profile if profile is None else profile + liked_profile
        if profile is not None:
            profile = profile / (np.linalg.norm(profile, axis=1, keepdims=True) + 1e-9)
            scores, strategy = scores + _z(profile @ m.emb.T)[0], "cold-start: popular + content"
        scores[hist] = -np.inf
    top = np.argsort(-scores, kind="stable")[:k]
    top = top[np.isfinite(scores[top])]
    return {"user": user, "model": row.ref, "strategy": strategy, "known_user": u is not None,
            "items": [{"item_id": m.item_ids[i], "title": m.titles[i], "score": round(float(scores[i]), 4),
                       "interactions": int(m.counts[i])} for i in top]}
