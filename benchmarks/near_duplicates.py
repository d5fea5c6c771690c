"""Near-duplicate search: our MinHash/LSH (`modelshop.data.near`) against `datasketch`'s MinHashLSH.

Both look for pairs of distinct match keys (the texts as `data profile` sees them: normalised,
case and punctuation folded) whose character 3-gram Jaccard similarity is at least 0.8, each with
128 hash functions; datasketch picks its own bands and rows for the 0.8 threshold ("datasketch") or
is given ours ("ds 16×8": 16 bands of 8 rows, see near.py), and both keep a proposed pair when its
signature estimate is ≥ 0.8, as `data profile` does. The truth is the exact Jaccard of every pair
(a sparse product of the 3-gram
sets, in blocks), so recall and precision are against all pairs, not a sample. Times are CPU
seconds of this process (steadier than wall time on a shared machine).

Real datasets hold few near duplicates, so each set also gets planted ones: `--plant` keys copied
with a few word-level edits (a word dropped, doubled or swapped for another of the dataset), whose
similarities spread across the threshold; the truth decides which of them count.

    .venv/bin/python benchmarks/near_duplicates.py                          # rotten_tomatoes, bbc_news, faq_en
    .venv/bin/python benchmarks/near_duplicates.py --datasets rotten_tomatoes --plant 0
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
from scipy import sparse

from modelshop.data.duplicates import KeyIndex, exact_groups
from modelshop.data.near import pairs_from_signatures, signatures

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
FILES = {"rotten_tomatoes": ["rotten_tomatoes/train.jsonl", "rotten_tomatoes/test.jsonl"],
         "bbc_news": ["bbc_news/train.jsonl", "bbc_news/test.jsonl"],
         "faq_en": ["faq_en/faq.jsonl"]}
THRESHOLD = 0.8
PERM = 128


def texts_of(name: str) -> list[str]:
    out = []
    for rel in FILES[name]:
        for line in (DATASETS / rel).read_text().split("\n"):  # not splitlines: texts hold U+2028
            if not line.strip():
                continue
            row = json.loads(line)
            out.append(row["text"] if "text" in row else f"{row['q']} {row['a']}")
    return out


def plant(texts: list[str], n: int, rng: random.Random) -> list[str]:
    """`n` edited copies of random texts of 8+ words: 1–3 word-level edits each."""
    words = [w for t in texts[:2000] for w in t.split()]
    long = [t for t in texts if len(t.split()) >= 8]
    out = []
    for _ in range(n):
        tokens = rng.choice(long).split()
        for _ in range(rng.randint(1, 3)):
            i, kind = rng.randrange(len(tokens)), rng.choice(("drop", "double", "swap"))
            if kind == "drop" and len(tokens) > 1:
                del tokens[i]
            elif kind == "double":
                tokens.insert(i, tokens[i])
            else:
                tokens[i] = rng.choice(words)
        out.append(" ".join(tokens))
    return out


def shingles(key: str) -> list[str]:
    """The character 3-grams near.py hashes (a key shorter than 3 padded with NULs)."""
    key = key if len(key) >= 3 else key + "\0" * (3 - len(key))
    return [key[i:i + 3] for i in range(len(key) - 2)]


def truth(keys: list[str]) -> set[tuple[int, int]]:
    """Every pair i < j with exact 3-gram Jaccard ≥ THRESHOLD."""
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, key in enumerate(keys):
        ids = {vocab.setdefault(s, len(vocab)) for s in shingles(key)}
        rows.extend([i] * len(ids))
        cols.extend(ids)
    m = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(keys), len(vocab)))
    size = np.asarray(m.sum(axis=1)).ravel()
    found = set()
    for lo in range(0, len(keys), 2000):
        inter = (m[lo:lo + 2000] @ m.T).tocoo()
        i, j, v = inter.row + lo, inter.col, inter.data
        keep = (i < j) & (v / (size[i] + size[j] - v) >= THRESHOLD - 1e-9)
        found.update(zip(i[keep].tolist(), j[keep].tolist()))
    return found


def ours(keys: list[str]) -> tuple[set[tuple[int, int]], float]:
    started = time.process_time()
    pairs = pairs_from_signatures(signatures(keys), THRESHOLD)
    return {(i, j) for i, j, _ in pairs}, time.process_time() - started


def datasketch_lsh(keys: list[str], params: tuple[int, int] | None = None) -> tuple[set[tuple[int, int]], float]:
    """datasketch's MinHash and MinHashLSH; `params` (bands, rows) or its own choice for THRESHOLD."""
    from datasketch import MinHash, MinHashLSH

    started = time.process_time()
    hashes = MinHash.bulk([[s.encode("utf-8", "surrogatepass") for s in shingles(k)] for k in keys], num_perm=PERM)
    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=PERM, params=params)
    with lsh.insertion_session() as session:
        for i, h in enumerate(hashes):
            session.insert(i, h)
    found = set()
    for i, h in enumerate(hashes):
        for j in lsh.query(h):
            if i < j and h.jaccard(hashes[j]) >= THRESHOLD:
                found.add((i, j))
    return found, time.process_time() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="rotten_tomatoes,bbc_news,faq_en")
    p.add_argument("--plant", type=int, default=500, help="edited copies added to each dataset")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    print(f"{'dataset':16s} {'keys':>6s} {'true pairs':>10s}  {'method':11s} {'found':>6s} {'recall':>7s} "
          f"{'precision':>9s} {'CPU s':>8s}")
    for name in args.datasets.split(","):
        texts = texts_of(name)
        texts += plant(texts, args.plant, random.Random(args.seed))
        keys = KeyIndex.build(exact_groups(texts)).keys
        true = truth(keys)
        for method, run in (("ours", ours), ("datasketch", datasketch_lsh),
                            ("ds 16×8", lambda k: datasketch_lsh(k, (16, 8)))):
            found, seconds = run(keys)
            hit = len(found & true)
            print(f"{name:16s} {len(keys):6d} {len(true):10d}  {method:11s} {len(found):6d} "
                  f"{hit / len(true) if true else 1:7.3f} {hit / len(found) if found else 1:9.3f} {seconds:8.2f}")


if __name__ == "__main__":
    main()
