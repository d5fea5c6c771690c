"""FAQ answering: recall of our multi-view index against plain mean-pooled minilm over question+answer.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/faq_eval.py [--data ../shared/datasets/faq_en/faq.jsonl]

Builds a knowledge base from the FAQ file in a temporary home (the real `build_kb`), then measures
  * recall@1 with every stored question asked as written (entries that share the exact same question
    text cannot be told apart, so a second figure counts them as one),
  * recall@1 / recall@3 on the hand-written rewordings in benchmarks/data/faq_rewordings.jsonl,
  * how often `ask` is confident: on the rewordings, and on off-topic messages (the English
    customer-service messages bundled with the demo, which no construction FAQ answers),
for ours and, from the same embeddings, the baseline (one question+answer vector per entry).
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
from modelshop.apps.faq import VIEW_QA, build_kb, embed_texts, load_index  # noqa: E402
from modelshop.demo import DATA as DEMO_MESSAGES  # noqa: E402
from modelshop.settings import Settings  # noqa: E402


def recall(scores: np.ndarray, targets: np.ndarray, k: int, same: np.ndarray | None = None) -> float:
    """Share of rows whose target is in the top k (or, with `same`, an entry equivalent to it)."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    if same is None:
        return float(np.mean([t in row for t, row in zip(targets, top)]))
    return float(np.mean([same[t][row].any() for t, row in zip(targets, top)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "faq_en" / "faq.jsonl")
    parser.add_argument("--rewordings", type=Path, default=ROOT / "benchmarks" / "data" / "faq_rewordings.jsonl")
    args = parser.parse_args()
    rewordings = [json.loads(line) for line in args.rewordings.read_text().splitlines() if line.strip()]
    offtopic = [r["text"] for r in map(json.loads, DEMO_MESSAGES.read_text().splitlines()) if r["text"].isascii()]

    with tempfile.TemporaryDirectory() as home:
        settings = Settings(home=Path(home), progress=False)
        started = time.perf_counter()
        kb = build_kb(args.data, "faq_en", question_col="q", answer_col="a", id_col="id", settings=settings)
        built = time.perf_counter() - started
        store = ArtifactStore.from_settings(settings)
        index = load_index(str(store.path(store.get("faq", "faq_en"))))
        ids = [e["id"] for e in index.entries]
        questions = [e["question"] for e in index.entries]
        canon = np.array([q.strip().lower() for q in questions])
        same = canon[:, None] == canon[None, :]
        started = time.perf_counter()
        asked = embed_texts(questions + [r["question"] for r in rewordings] + offtopic, settings)
        embedded = time.perf_counter() - started
    as_is, reworded, off = np.split(asked, [len(questions), len(questions) + len(rewordings)])
    targets_self = np.arange(len(questions))
    targets = np.array([ids.index(r["id"]) for r in rewordings])
    threshold = kb["threshold"]

    print(f"knowledge base: {kb['entries']} entries, {kb['views']} views, built in {built:.1f} s; "
          f"threshold {threshold} ({kb['calibration']['method']}: quantile {kb['calibration'].get('quantile')} "
          f"of {kb['calibration'].get('probes')} off-topic probes = "
          f"{kb['calibration'].get('probe_score_at_quantile')}, "
          f"floor {kb['calibration'].get('floor')})")
    print(f"queries: {len(questions)} stored questions, {len(rewordings)} rewordings over "
          f"{len({r['id'].rsplit('-', 1)[0] for r in rewordings})} categories, {len(offtopic)} off-topic "
          f"messages; embedded in {embedded:.1f} s")
    print(f"{'method':<44} {'as-is R@1':>9} {'(dup-aware)':>11} {'reword R@1':>10} {'R@3':>6} "
          f"{'confident: reworded':>20} {'off-topic':>9}")
    for label, kinds in (("baseline: minilm mean-pooled question+answer", (VIEW_QA,)),
                         ("ours: multi-view max (q, q+a, q+passages)", None)):
        s_self, s_rw, s_off = (index.entry_scores(x, kinds) for x in (as_is, reworded, off))
        conf_rw = float(np.mean(s_rw.max(1) >= threshold))
        conf_off = float(np.mean(s_off.max(1) >= threshold))
        print(f"{label:<44} {recall(s_self, targets_self, 1):>9.3f} {recall(s_self, targets_self, 1, same):>11.3f} "
              f"{recall(s_rw, targets, 1):>10.3f} {recall(s_rw, targets, 3):>6.3f} {conf_rw:>20.3f} {conf_off:>9.3f}")


if __name__ == "__main__":
    main()
