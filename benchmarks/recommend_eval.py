"""Recommendation on MovieLens 100K: our hybrid (EASE + text embeddings) against popularity.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/recommend_eval.py [--data ../shared/datasets/movielens_100k]

Temporal leave-last-out: each user's last interaction (by timestamp) is held out; the model is fitted
(the real `fit`, its own settings chosen on the training part only) on everything else. Both methods
rank every item the user has not seen; HR@10 and NDCG@10 over all users.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from modelshop.apps.recdata import Interactions, read_interactions, read_items  # noqa: E402
from modelshop.apps.recommend import fit, hit_ndcg  # noqa: E402
from modelshop.settings import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets" / "movielens_100k")
    args = parser.parse_args()
    started = time.perf_counter()
    items = read_items(args.data / "ml-100k.item")
    inter = read_interactions(args.data / "ml-100k.inter")
    order = np.lexsort((inter.times, inter.users))
    users, last = inter.users[order], np.r_[inter.users[order][1:] != inter.users[order][:-1], True]
    held = order[last]                                  # each user's latest interaction
    train = np.ones(len(users), dtype=bool)
    train[held] = False
    train_inter = Interactions(inter.users[train], inter.items[train], inter.times[train])
    with tempfile.TemporaryDirectory() as home:
        model, report = fit(items, train_inter, settings=Settings(home=Path(home), progress=False))
    fitted = time.perf_counter() - started
    index = {i: n for n, i in enumerate(model.item_ids)}
    rows = [model.user_pos[u] for u in inter.users[held]]
    hist = [model.history[model.indptr[u]:model.indptr[u + 1]] for u in rows]
    targets = np.array([index[i] for i in inter.items[held]])
    ours = model.scores(hist)
    popular = np.tile(np.log1p(model.counts).astype(np.float32), (len(hist), 1))
    for r, h in enumerate(hist):
        popular[r, h] = -np.inf
    print(f"MovieLens 100K: {report['users']} users, {report['items']} items, {report['interactions']} training "
          f"interactions; {len(targets)} held out (each user's last); "
          f"fit + score in {time.perf_counter() - started:.1f} s "
          f"(fit {fitted:.1f} s)")
    print(f"settings chosen on the training part: {report['params']} (validation {report.get('validation')})")
    results = {name: hit_ndcg(s, targets) for name, s in (("popularity", popular), ("ours: EASE + text, hybrid", ours))}
    print(f"{'method':<28} {'HR@10':>7} {'NDCG@10':>8}")
    for name, (hr, ndcg) in results.items():
        print(f"{name:<28} {hr:>7.4f} {ndcg:>8.4f}")
    ratio = results["ours: EASE + text, hybrid"][0] / max(results["popularity"][0], 1e-9)
    print(f"HR@10 ours / popularity: {ratio:.2f}x")


if __name__ == "__main__":
    main()
