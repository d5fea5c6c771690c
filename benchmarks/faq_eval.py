"""FAQ retrieval on rewordings it was not tuned on: ours (hybrid) against a dense and a BM25 baseline.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/faq_eval.py           # the held-out half: the figures
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/faq_eval.py --tune    # the tuning half: the choices

Builds a knowledge base from `faq_en` in a temporary home (the real `build_kb`, threshold calibrated
as any KB's is), then on one half of the hand-written rewordings (benchmarks/data/faq_rewordings_*.jsonl,
split by target entry: no entry of one half is asked about in the other) measures recall@1 and
recall@3 of
  * BM25 (bm25s over question + answer, English stemming and stop words, as its README does it),
  * one mean-pooled minilm vector of question + answer per entry (cosine),
  * ours (`FaqIndex.ranking`, what `ask` ranks by),
  * and, for reference, what was tried and not chosen: the multi-view maximum of issue 6 and two
    other fusions of the same two lists (reciprocal rank, k=60; per-query z-scores),
plus recall@1 with every stored question asked as written. Then how `ask` would answer: on the
half, the shares answered right, answered wrong (confidently) and refused; on off-topic questions,
the share answered at all. Off-topic questions: with --tune the ones `build_kb` calibrates on
(src/modelshop/apps/data/offtopic_questions.txt); without, the held-out ones
(benchmarks/data/faq_offtopic_heldout.txt) and the demo's English customer-service messages.

--tune also prints the grids the choices were read from: recall against the lexical weight, and
the cost of each threshold (a confident wrong answer, on- or off-topic, costs 1; a refused right
one 0.5: the user still sees it among the suggestions).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from modelshop.apps.artifacts import ArtifactStore  # noqa: E402
from modelshop.apps.faq import VIEW_QA, build_kb, embed_texts, load_index, probe_questions  # noqa: E402
from modelshop.demo import DATA as DEMO_MESSAGES  # noqa: E402
from modelshop.settings import Settings  # noqa: E402

DATA = ROOT / "benchmarks" / "data"
WEIGHTS = (0.0, 0.1, 0.15, 0.2, 0.225, 0.25, 0.275, 0.3, 0.325, 0.35, 0.4, 0.5)
THRESHOLDS = tuple(round(t, 3) for t in np.arange(0.35, 0.626, 0.025))


def recall(scores: np.ndarray, targets: np.ndarray, k: int, same: np.ndarray | None = None) -> float:
    """Share of rows whose target is in the top k (or, with `same`, an entry equivalent to it)."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    if same is None:
        return float(np.mean([t in row for t, row in zip(targets, top)]))
    return float(np.mean([same[t][row].any() for t, row in zip(targets, top)]))


def bm25_baseline(entries: list[dict]):
    """Plain bm25s over question + answer: a function from questions to their scores for every entry."""
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([f"{e['question']} {e['answer']}" for e in entries], stopwords="en",
                                   stemmer=stemmer, show_progress=False), show_progress=False)

    def scores(texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), len(entries)))
        for row, tokens in zip(out, bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False,
                                                   return_ids=False)):
            ids = retriever.get_tokens_ids(tokens)
            if ids:
                row[:] = retriever.get_scores_from_ids(ids)
        return out
    return scores


def reciprocal_rank(*lists: np.ndarray, k: int = 60) -> np.ndarray:
    fused = np.zeros_like(lists[0], dtype=float)
    for scores in lists:
        order = np.argsort(-scores, axis=1, kind="stable")
        ranks = np.empty_like(order)
        np.put_along_axis(ranks, order, np.arange(1, scores.shape[1] + 1)[None, :], axis=1)
        fused += 1.0 / (k + ranks)
    return fused


def zscores(scores: np.ndarray) -> np.ndarray:
    return (scores - scores.mean(1, keepdims=True)) / np.maximum(scores.std(1, keepdims=True), 1e-6)


def read_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "faq_en" / "faq.jsonl")
    parser.add_argument("--tune", action="store_true", help="the tuning half, its off-topic probes and the grids")
    args = parser.parse_args()
    half = "tuning" if args.tune else "heldout"
    rewordings = [json.loads(line) for line in (DATA / f"faq_rewordings_{half}.jsonl").read_text().splitlines()
                  if line.strip()]
    if args.tune:
        offtopic = {"off-topic probes (calibration)": probe_questions()}
    else:
        demo = [r["text"] for r in map(json.loads, DEMO_MESSAGES.read_text().splitlines()) if r["text"].isascii()]
        offtopic = {"off-topic, held out": read_lines(DATA / "faq_offtopic_heldout.txt"),
                    "demo support messages (en)": demo}

    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), progress=False)
        started = time.perf_counter()
        kb = build_kb(args.data, "faq_en", question_col="q", answer_col="a", id_col="id", settings=settings)
        built = time.perf_counter() - started
        store = ArtifactStore.from_settings(settings)
        index = load_index(str(store.path(store.get("faq", "faq_en"))))
        questions = [e["question"] for e in index.entries]
        asked = [r["question"] for r in rewordings]
        off_texts = [t for texts in offtopic.values() for t in texts]
        started = time.perf_counter()
        vectors = embed_texts(questions + asked + off_texts, settings)
        embedded = time.perf_counter() - started
    as_is, reworded, off = np.split(vectors, [len(questions), len(questions) + len(asked)])
    ids = [e["id"] for e in index.entries]
    targets, targets_self = np.array([ids.index(r["id"]) for r in rewordings]), np.arange(len(questions))
    canon = np.array([q.strip().lower() for q in questions])
    same = canon[:, None] == canon[None, :]
    bm25 = bm25_baseline(index.entries)

    def dense(x):
        return index.entry_scores(x, (VIEW_QA,))

    methods = {
        "BM25 (bm25s, question+answer)": lambda t, x: bm25(t),
        "minilm mean-pooled question+answer": lambda t, x: dense(x),
        "ours: cosine + 0.25 x BM25 / KB scale": index.ranking,
        "(tried) issue 6: best of q, q+a, q+sentence": lambda t, x: index.entry_scores(x),
        "(tried) RRF of minilm and BM25, k=60": lambda t, x: reciprocal_rank(dense(x), bm25(t)),
        "(tried) z(minilm) + 0.25 z(BM25) per query": lambda t, x: zscores(dense(x)) + 0.25 * zscores(bm25(t)),
    }
    threshold = kb["threshold"]
    print(f"knowledge base: {kb['entries']} entries, {kb['views']} views, built in {built:.1f} s; threshold "
          f"{threshold} ({kb['calibration']['method']}: quantile {kb['calibration'].get('quantile')} of "
          f"{kb['calibration'].get('probes')} off-topic probes = {kb['calibration'].get('probe_score_at_quantile')}, "
          f"floor {kb['calibration'].get('floor')}); BM25 scale {kb['retrieval']['lexical_scale']}")
    print(f"queries: {len(questions)} stored questions; the {half} half: {len(asked)} rewordings of "
          f"{len(set(targets))} entries; off-topic: " + ", ".join(f"{len(v)} {k}" for k, v in offtopic.items())
          + f"; embedded in {embedded:.1f} s")
    print(f"\n{'method':<46} {'as-is R@1':>9} {'(dup-aware)':>11} {half + ' R@1':>12} {'R@3':>6}")
    for label, method in methods.items():
        s_self, s_rw = method(questions, as_is), method(asked, reworded)
        print(f"{label:<46} {recall(s_self, targets_self, 1):>9.3f} {recall(s_self, targets_self, 1, same):>11.3f} "
              f"{recall(s_rw, targets, 1):>12.3f} {recall(s_rw, targets, 3):>6.3f}")

    # how ask answers: the first answer by rank, confident when its score reaches the threshold
    first = [hits[0] for hits in index.search(asked, reworded, 1)]
    right = np.array([e == t for (e, _), t in zip(first, targets)])
    score = np.array([s for _, s in first])
    off_scores, start = {}, 0
    for name, texts in offtopic.items():
        off_scores[name] = np.array([hits[0][1] for hits in index.search(texts, off[start:start + len(texts)], 1)])
        start += len(texts)
    confident = score >= threshold
    print(f"\nours at the KB's threshold {threshold}, {half} half: answered right {np.mean(confident & right):.3f}, "
          f"answered wrong {np.mean(confident & ~right):.3f}, refused {np.mean(~confident):.3f} "
          f"(of which the first candidate was right {np.mean(~confident & right):.3f})")
    for name, s in off_scores.items():
        n = int(np.sum(s >= threshold))
        print(f"  {name}: answered (all wrong) {n / len(s):.3f} ({n} of {len(s)})")
    if args.tune:
        tuning_grids(index, asked, reworded, targets, score, right, np.concatenate(list(off_scores.values())))


def tuning_grids(index, asked, reworded, targets, score, right, off_scores) -> None:
    """What the lexical weight and the threshold were read from (the tuning half only)."""
    cosine, lexical = reworded @ index.vectors[index.qa_rows].T, index.lexical.scores(asked) / index.lexical.scale
    print("\nlexical weight: R@1 / R@3 of cosine + w x BM25 / scale")
    print("  " + "  ".join(f"{w}: {recall(cosine + w * lexical, targets, 1):.3f}/"
                           f"{recall(cosine + w * lexical, targets, 3):.3f}" for w in WEIGHTS))
    print("threshold: answered wrong / refused right / off-topic answered (counts) -> cost")
    for t in THRESHOLDS:
        wrong, refused = int(np.sum((score >= t) & ~right)), int(np.sum((score < t) & right))
        off = int(np.sum(off_scores >= t))
        print(f"  {t:.3f}: {wrong:>3} / {refused:>3} / {off:>3} -> {wrong + off + 0.5 * refused:.1f}")


if __name__ == "__main__":
    main()
