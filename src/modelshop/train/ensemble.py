"""What a run deploys: the transformer, tfidf, or both combined, decided on the validation split only.

    choose(val, p_transformer, p_tfidf, ...)   → Choice: what to deploy, why, the figures it rests on
    combine_weights(...)                        → the mixing weights of the combination (per language)

The combination is the one `modelshop.inference.ensemble` serves: w · p_transformer + (1 − w) · p_tfidf,
w per language. Each weight is picked from a grid by validation log-loss, and a language gets a weight
of its own only with MIN_LANGUAGE_ROWS validation rows, else the overall one.

A combination fitted on the validation split would look better there than it is, so the figure it
is judged by is cross-fitted: the validation rows are split into FOLDS, the weights chosen on all
but one fold score the fold left out, and the out-of-fold predictions are what is measured. It is
deployed only when that figure beats the better single model by RECOMMEND_MARGIN: it serves both
models, so it must pay for the second one. The evaluation file is never looked at here: its figures
are reported beside the choice, not used to make it. (The transformer's best epoch and tfidf's C were
picked on the same split, so the single models' validation figures lean a little optimistic as well.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import f1_score

from modelshop.inference.ensemble import OTHER, mix, text_languages
from modelshop.train.card import RECOMMEND_MARGIN

MIN_VALIDATION_ROWS = 20   # fewer validation rows cannot tell models apart: the model asked for is deployed
MIN_LANGUAGE_ROWS = 10     # validation rows a language needs for a weight of its own
GRID = tuple(round(i / 10, 1) for i in range(11))   # weights of the transformer tried, 0 (tfidf) … 1 (transformer)
FOLDS = 5
CANDIDATES = ("transformer", "tfidf", "ensemble")


@dataclass(frozen=True)
class Choice:
    """What the version serves and why, from validation figures."""

    deploy: str                                  # transformer | tfidf | ensemble
    reason: str
    validation: dict = field(default_factory=dict)   # the figures the choice rests on (JSON-ready)
    weights: dict | None = None                  # the best combination's {"default": w, "per_language": {code: w}},
                                                 # deployed or not (None: too few validation rows to fit one)
    languages: list[str] = field(default_factory=list)   # the languages the combination tells apart


def _predictions(probs: np.ndarray, multi_label: bool, threshold: float) -> np.ndarray:
    return (probs >= threshold).astype(int) if multi_label else probs.argmax(axis=1)


def macro_f1(truth: np.ndarray, probs: np.ndarray, multi_label: bool, threshold: float = 0.5) -> float:
    """Macro-F1 over the classes in the gold or predicted labels (as `loop.val_macro_f1` reports it)."""
    if len(truth) == 0:
        return 0.0
    return float(f1_score(truth, _predictions(probs, multi_label, threshold), average="macro", zero_division=0))


def log_loss(truth: np.ndarray, probs: np.ndarray, multi_label: bool) -> float:
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    if multi_label:
        return float(-np.mean(truth * np.log(p) + (1 - truth) * np.log(1 - p)))
    return float(-np.mean(np.log(p[np.arange(len(truth)), truth])))


def best_weight(truth, p_tr, p_tf, multi_label: bool, threshold: float) -> float:
    """The grid weight of lowest log-loss on these rows (ties: nearer 0.5). Log-loss, not macro-F1: every row's
    probability moves it, where macro-F1 on tens of rows jumps with one row of a small class (on the demo's 57
    Chinese validation rows, F1 picked a transformer weight of 0.2 to 0.3 that the held-out rows then punished)."""
    scored = [(log_loss(truth, w * p_tr + (1 - w) * p_tf, multi_label), abs(w - 0.5), w) for w in GRID]
    return min(scored)[2]


def combine_weights(truth, p_tr, p_tf, codes: list[str], *, multi_label: bool, threshold: float = 0.5) -> dict:
    """{"default": w over all rows, "per_language": {code: w}} for each language with MIN_LANGUAGE_ROWS rows."""
    codes_arr = np.asarray(codes)
    weights = {"default": best_weight(truth, p_tr, p_tf, multi_label, threshold), "per_language": {}}
    for code in sorted(set(codes) - {OTHER}):
        mask = codes_arr == code
        if mask.sum() >= MIN_LANGUAGE_ROWS:
            weights["per_language"][code] = best_weight(truth[mask], p_tr[mask], p_tf[mask], multi_label, threshold)
    return weights


def folds(codes: list[str], truth: np.ndarray, k: int = FOLDS, seed: int = 42) -> np.ndarray:
    """A fold number per row: rows of each (language, label) dealt out in turn after a seeded shuffle, so every
    fold holds its share of each language and class."""
    rng = np.random.default_rng(seed)
    key = [f"{c}|{t.tobytes() if isinstance(t, np.ndarray) else t}" for c, t in zip(codes, truth, strict=True)]
    out = np.zeros(len(codes), dtype=int)
    dealt = 0
    for stratum in sorted(set(key)):
        rows = [i for i, s in enumerate(key) if s == stratum]
        rng.shuffle(rows)
        for j, i in enumerate(rows):
            out[i] = (dealt + j) % k
        dealt += len(rows)
    return out


def cross_fitted(truth, p_tr, p_tf, codes: list[str], *, multi_label: bool, threshold: float,
                 seed: int = 42) -> np.ndarray:
    """The combination's probabilities on each row, with weights chosen on the other folds only."""
    which = folds(codes, truth, seed=seed)
    out = np.zeros_like(p_tr, dtype=np.float64)
    for k in range(FOLDS):
        held = which == k
        if not held.any():
            continue
        rest = ~held
        weights = combine_weights(truth[rest], p_tr[rest], p_tf[rest], [c for c, r in zip(codes, rest) if r],
                                  multi_label=multi_label, threshold=threshold)
        out[held] = mix(p_tr[held], p_tf[held], [c for c, h in zip(codes, held) if h], weights)
    return out


def label_targets(labels: list, label_names: list[str], multi_label: bool) -> np.ndarray:
    """Class ids (single-label) or a 0/1 matrix (multi-label), for the figures here."""
    index = {lab: i for i, lab in enumerate(label_names)}
    if multi_label:
        out = np.zeros((len(labels), len(label_names)), dtype=int)
        for r, labs in enumerate(labels):
            out[r, [index[lab] for lab in labs]] = 1
        return out
    return np.array([index[y] for y in labels], dtype=int)


def choose(val_texts: list[str], val_labels: list, label_names: list[str], p_tr: np.ndarray, p_tf: np.ndarray,
           *, multi_label: bool, threshold: float = 0.5, languages: list[str] | None = None,
           seed: int = 42) -> Choice:
    """Deploy the transformer, tfidf, or their combination, on the validation figures alone.

    `languages`: the languages found in the validation texts (the profile's detector), among which
    the combination tells each text's language apart; fewer than two: one weight for every text."""
    truth = label_targets(val_labels, label_names, multi_label)
    n = len(truth)
    t, b = macro_f1(truth, p_tr, multi_label, threshold), macro_f1(truth, p_tf, multi_label, threshold)
    figures = {"rows": n, "transformer": round(t, 4), "tfidf": round(b, 4)}
    if n < MIN_VALIDATION_ROWS:
        return Choice("transformer", f"Only {n} validation rows, too few to choose on (at least "
                      f"{MIN_VALIDATION_ROWS}): the transformer asked for is deployed; compare the tfidf "
                      "figures beside it.", figures)
    candidates = sorted({c for c in (languages or []) if c not in (OTHER, "und")})
    codes = text_languages(val_texts, candidates)
    weights = combine_weights(truth, p_tr, p_tf, codes, multi_label=multi_label, threshold=threshold)
    oof = cross_fitted(truth, p_tr, p_tf, codes, multi_label=multi_label, threshold=threshold, seed=seed)
    e = macro_f1(truth, oof, multi_label, threshold)
    figures["ensemble"] = round(e, 4)
    figures["weights"] = weights
    by_lang = per_language_figures(truth, {"transformer": p_tr, "tfidf": p_tf, "ensemble": oof}, codes,
                                   multi_label, threshold)
    if by_lang:
        figures["per_language"] = by_lang
    single, why = _single(t, b)
    best = max(t, b)
    used = set([weights["default"], *weights["per_language"].values()])
    where = f"On the validation split ({n} rows, never the evaluation file)"
    if used <= {0.0} or used <= {1.0}:
        return Choice(single, f"{where} {why} The best combination uses one model alone, so it is not worth "
                      "serving both.", figures, weights, candidates)
    if e - best >= RECOMMEND_MARGIN:
        return Choice("ensemble", f"{where} combining the two ({_describe(weights)}) scores {e:.3f} macro-F1, "
                      f"cross-validated over its weights, against {t:.3f} for the transformer and {b:.3f} for "
                      f"tfidf: {(e - best) * 100:.1f} points better than either alone, worth serving both.",
                      figures, weights, candidates)
    return Choice(single, f"{where} {why} Combining the two ({_describe(weights)}) scores {e:.3f}, "
                  f"cross-validated, less than {RECOMMEND_MARGIN * 100:.0f} point better than the better one "
                  "alone: not worth serving both.", figures, weights, candidates)


def _single(t: float, b: float) -> tuple[str, str]:
    delta = t - b
    if delta >= RECOMMEND_MARGIN:
        return "transformer", (f"the transformer beats tfidf by {delta * 100:.1f} points of macro-F1 ({t:.3f} vs "
                               f"{b:.3f}), worth its higher serving cost.")
    if delta > -RECOMMEND_MARGIN:
        return "tfidf", (f"the transformer is within {RECOMMEND_MARGIN * 100:.0f} point of tfidf ({t:.3f} vs "
                         f"{b:.3f} macro-F1); tfidf is far cheaper and faster to serve.")
    return "tfidf", f"tfidf beats the transformer by {-delta * 100:.1f} points of macro-F1 ({b:.3f} vs {t:.3f})."


def _describe(weights: dict) -> str:
    """'transformer weight 0.9 for en, 0.1 for zh, 0.5 otherwise'."""
    per = weights.get("per_language") or {}
    if not per:
        return f"transformer weight {weights['default']:.1f}"
    parts = ", ".join(f"{w:.1f} for {code}" for code, w in per.items())
    return f"transformer weight {parts}, {weights['default']:.1f} otherwise"


def per_language_figures(truth, probs: dict[str, np.ndarray], codes: list[str], multi_label: bool,
                         threshold: float) -> dict:
    """{code: {"n", model: macro-F1, ...}} for each language with MIN_LANGUAGE_ROWS validation rows."""
    codes_arr = np.asarray(codes)
    out = {}
    for code in sorted(set(codes) - {OTHER}):
        mask = codes_arr == code
        if mask.sum() >= MIN_LANGUAGE_ROWS:
            out[code] = {"n": int(mask.sum()), **{name: round(macro_f1(truth[mask], p[mask], multi_label, threshold), 4)
                                                  for name, p in probs.items()}}
    return out
