"""FAQ question answering: a knowledge base (KB) of question–answer pairs searched by meaning and by words.

How entries are ranked: hybrid retrieval. Each entry's question + answer is embedded (mean-pooled,
normalised minilm) and indexed for BM25 (bm25s; English stemming and stop words). A user question's
rank score for an entry is its cosine + LEXICAL_WEIGHT × its BM25 score / the KB's lexical scale
(the median BM25 score of an entry for its own question: what a good match scores in this KB, so
the weight means the same in a KB of 8 entries or of 100 000). BM25 alone is weak on rewordings
(people reword by changing words) but sure when a rare term matches — a law, a form, a product
name — where the dense vector hesitates. Reciprocal rank fusion (RRF), the usual way to combine
them, lost by far: it gives the weaker list an equal say whatever its scores. Z-scores per query did
as well on the tuning half, but make the one common word a question shares with one entry of a small
KB a strong match ("can I buy a voucher" → returns). Every choice was made on the tuning half of
the project's rewordings of `faq_en`; on the held-out half recall@1 / recall@3 are 0.848 / 0.936,
against 0.816 / 0.888 for the cosine alone and 0.552 / 0.696 for BM25 alone (`benchmarks/faq_eval.py`,
BENCHMARKS.md).

Confidence. An answer's "score" is the best cosine over the entry's views: its question, its
question + answer, and its question + each sentence of its answer (one detail of a long answer).
A KB's threshold is calibrated from its own scores: the bundled off-topic questions
(`data/offtopic_questions.txt`) are asked, and the threshold is the `faq_threshold_quantile` of
the scores their first answers reach, never below `faq_threshold_floor`. Below it, `ask` answers
"no confident answer" (the candidates come back as suggestions, without answer text) instead of a
wrong answer. On the tuning half any threshold from 0.425 to 0.6 costs about the same (confident
wrong answers against refused right ones); the floor 0.5 lies there and decides for `faq_en`.

Search is exact (numpy, one matrix product; BM25 scores every entry anyway) up to
`faq_exact_max_entries` entries; larger KBs also get an HNSW index (faiss) over the views and are
ranked among the entries it and BM25 bring up.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from modelshop.apps.artifacts import ArtifactStore, check_name
from modelshop.errors import ValidationError, did_you_mean
from modelshop.inference.models import Models
from modelshop.settings import Settings, get_settings

KIND = "faq"
QUESTION_NAMES = ("question", "q", "query", "title", "prompt", "问题", "问")
ANSWER_NAMES = ("answer", "a", "response", "reply", "body", "答案", "回答", "答")
ID_NAMES = ("id", "faq_id", "key", "uid", "编号")
VIEW_QUESTION, VIEW_QA, VIEW_PASSAGE = 0, 1, 2
MAX_TOP_K = 50
PROBES = Path(__file__).parent / "data" / "offtopic_questions.txt"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[。！？；])")
# Weight of the scaled BM25 score beside the cosine: the middle of the plateau where recall@1 on the
# tuning half is 0.81–0.83 (0.15 to 0.35; 0.792 for the cosine alone, 0.782 at 0.4), recall@3 there
# 0.97–0.99 (0.960) (`benchmarks/faq_eval.py --tune`).
LEXICAL_WEIGHT = 0.25
_LETTER_DIGIT = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")


# --- reading question–answer files --------------------------------------------------------------

def read_pairs(path: str | Path, question_col: str | None = None, answer_col: str | None = None,
               id_col: str | None = None) -> list[dict]:
    """Entries {id, question, answer} from CSV/TSV/JSONL/JSON/Parquet; columns detected or named."""
    from modelshop.data.readers import read_table

    path = Path(path)
    if not path.is_file():
        raise ValidationError(f"{path} not found; give a CSV or JSONL file of question–answer pairs")
    table = read_table(path)
    q = _column(table.columns, question_col, QUESTION_NAMES, "question", path.name)
    a = _column(table.columns, answer_col, ANSWER_NAMES, "answer", path.name)
    i = _column(table.columns, id_col, ID_NAMES, "id", path.name, required=False)
    questions, answers = table.load(q), table.load(a)
    ids = table.load(i) if i else [str(n) for n in range(1, len(questions) + 1)]
    entries, seen = [], set()
    for row, (eid, question, answer) in enumerate(zip(ids, questions, answers), start=1):
        question, answer = _clean(question), _clean(answer)
        if not question or not answer:
            continue  # a pair needs both halves; counted in the error below when nothing is left
        eid = _clean(eid) or str(row)
        if eid in seen:
            raise ValidationError(f"{path.name} row {row}: id {eid!r} appears twice; ids must be unique")
        seen.add(eid)
        entries.append({"id": eid, "question": question, "answer": answer})
    if not entries:
        raise ValidationError(f"{path.name}: no row has both a {q!r} and an {a!r} value; fill them in")
    return entries


def _clean(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(str(value).split())


def _column(columns: list[str], wanted: str | None, names: tuple[str, ...], role: str, file: str,
            *, required: bool = True) -> str | None:
    if wanted is not None:
        if wanted in columns:
            return wanted
        raise ValidationError(f"{file} has no column {wanted!r}{did_you_mean(wanted, columns)}; "
                              f"columns found: {', '.join(columns)}")
    lowered = {c.strip().lower(): c for c in columns}
    for name in names:
        if name in lowered:
            return lowered[name]
    if not required:
        return None
    raise ValidationError(f"{file}: cannot tell which column holds the {role}s; columns found: "
                          f"{', '.join(columns)}; pass --{role}-col")


# --- views and embeddings -----------------------------------------------------------------------

def views(entries: list[dict]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The texts embedded for each entry, grouped by entry: (texts, owner entry, view kind)."""
    texts, owners, kinds = [], [], []
    for n, e in enumerate(entries):
        q, a = e["question"], e["answer"]
        items = [(q, VIEW_QUESTION), (f"{q} {a}", VIEW_QA)]
        sentences = [s.strip() for s in _SENTENCE_END.split(a) if len(s.strip()) > 3]
        if len(sentences) > 1:
            items += [(f"{q} {s}", VIEW_PASSAGE) for s in sentences]
        for text, kind in items:
            texts.append(text)
            owners.append(n)
            kinds.append(kind)
    return texts, np.asarray(owners, dtype=np.int32), np.asarray(kinds, dtype=np.int8)


def direct_models(settings: Settings) -> Models:
    """The `Models` of an app function called without one: this process's own (the CLI, library calls)."""
    from modelshop.serve.direct_models import DirectModels

    return DirectModels(settings)


def embed_texts(texts: list[str], settings: Settings, model: str | None = None, *,
                models: Models | None = None) -> np.ndarray:
    """Unit vectors of `texts` with the embedding model `model` (default: the settings' one)."""
    return (models or direct_models(settings)).embed(list(texts), model).vectors.astype(np.float32)


# --- words: BM25 -------------------------------------------------------------------------------

def lexical_text(text: str) -> str:
    """`text` as BM25 reads it: accents folded (bostadsrätt = bostadsratt), letters apart from digits
    (ABS18 = ABS 18), and runs of Chinese characters as overlapping pairs, since they have no spaces."""
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = _LETTER_DIGIT.sub(" ", text)
    return _CJK.sub(lambda m: " " + " ".join(m[0][i:i + 2] for i in range(max(1, len(m[0]) - 1))) + " ", text)


class Lexical:
    """BM25 (bm25s) over each entry's question + answer, English stemming and stop words."""

    def __init__(self, entries: list[dict]) -> None:
        import bm25s
        import Stemmer

        # a PyStemmer stemmer is not safe to share between threads, and the server asks from several
        self._bm25s, self._stemmer, self._stemming = bm25s, Stemmer.Stemmer("english"), threading.Lock()
        self._index = bm25s.BM25()
        self._index.index(self._tokens([f"{e['question']} {e['answer']}" for e in entries]), show_progress=False)
        self.size = len(entries)
        # what a good match scores in this KB: the median score of an entry for its own question (over
        # up to 256 entries, evenly spaced), so that the weight means the same in any KB
        sample = np.unique(np.linspace(0, len(entries) - 1, min(len(entries), 256)).astype(int))
        own = float(np.median(self.scores([entries[i]["question"] for i in sample])[np.arange(len(sample)), sample]))
        self.scale = own if own > 0 else 1.0

    def _tokens(self, texts: list[str]) -> list[list[str]]:
        texts = [lexical_text(t) for t in texts]
        with self._stemming:
            return self._bm25s.tokenize(texts, stopwords="en", stemmer=self._stemmer, return_ids=False,
                                        show_progress=False)

    def scores(self, texts: list[str]) -> np.ndarray:
        """BM25 scores (texts × entries); a row of zeros for a text that shares no word with the KB."""
        out = np.zeros((len(texts), self.size), dtype=np.float32)
        for row, tokens in zip(out, self._tokens(list(texts))):
            ids = self._index.get_tokens_ids(tokens)
            if ids:
                row[:] = self._index.get_scores_from_ids(ids)
        return out


# --- the index ----------------------------------------------------------------------------------

@dataclass
class FaqIndex:
    """The loaded files of one KB version: entries, view vectors (grouped by entry), BM25, the ANN index."""

    entries: list[dict]
    vectors: np.ndarray      # (views, dims) float32, unit length
    owners: np.ndarray       # (views,) entry of each view
    kinds: np.ndarray        # (views,) VIEW_*
    meta: dict
    ann: object | None = None
    lexical: Lexical | None = None
    lexical_weight: float = LEXICAL_WEIGHT
    qa_rows: np.ndarray = field(init=False)   # (entries,) the question + answer view of each entry

    def __post_init__(self) -> None:
        self.qa_rows = np.flatnonzero(self.kinds == VIEW_QA)
        if len(self.qa_rows) != len(self.entries):
            raise ValidationError(f"knowledge base files disagree: {len(self.entries)} entries, "
                                  f"{len(self.qa_rows)} question+answer vectors; build it again")
        if self.lexical is None:
            self.lexical = Lexical(self.entries)

    @property
    def starts(self) -> np.ndarray:
        return np.flatnonzero(np.r_[True, self.owners[1:] != self.owners[:-1]])

    def entry_scores(self, queries: np.ndarray, kinds: tuple[int, ...] | None = None) -> np.ndarray:
        """Cosines (queries × entries): each entry's best view; `kinds` limits the views used."""
        sims = queries @ self.vectors.T
        if kinds is not None:
            sims = np.where(np.isin(self.kinds, kinds)[None, :], sims, -np.inf)
        return np.maximum.reduceat(sims, self.starts, axis=1)

    def ranking(self, texts: list[str], queries: np.ndarray) -> np.ndarray:
        """The hybrid rank score (queries × entries) of every entry: cosine of its q+a + weight × BM25 / scale."""
        dense = queries @ self.vectors[self.qa_rows].T
        return dense + self.lexical_weight * self.lexical.scores(texts) / self.lexical.scale

    def search(self, texts: list[str], queries: np.ndarray, top_k: int) -> list[list[tuple[int, float]]]:
        """The best `top_k` (entry, score) per question (`texts`, embedded as `queries`) by rank, best first;
        the score is the entry's best view cosine."""
        top_k = min(top_k, len(self.entries))
        if self.ann is not None:
            return [self._search_ann(text, query, top_k) for text, query in zip(texts, queries)]
        ranks, scores = self.ranking(texts, queries), self.entry_scores(queries)
        out = []
        for rank, score in zip(ranks, scores):
            idx = np.argpartition(-rank, top_k - 1)[:top_k]
            idx = idx[np.argsort(-rank[idx], kind="stable")]
            out.append([(int(i), float(score[i])) for i in idx])
        return out

    def _search_ann(self, text: str, query: np.ndarray, top_k: int) -> list[tuple[int, float]]:
        # ranked as in the exact search, among the entries of the nearest views and BM25's best
        wanted = min(len(self.owners), max(64, top_k * 16))
        _, ids = self.ann.search(np.ascontiguousarray(query[None], dtype=np.float32), wanted)
        lexical = self.lexical.scores([text])[0]
        near = np.argpartition(-lexical, min(wanted, len(self.entries)) - 1)[:wanted]
        candidates = np.union1d(self.owners[ids[0][ids[0] >= 0]], near)
        rank = (self.vectors[self.qa_rows[candidates]] @ query
                + self.lexical_weight * lexical[candidates] / self.lexical.scale)
        starts, ends = self.starts, np.r_[self.starts[1:], len(self.owners)]
        return [(int(e), float(np.max(self.vectors[starts[e]:ends[e]] @ query)))
                for e in candidates[np.argsort(-rank, kind="stable")[:top_k]]]


@functools.lru_cache(maxsize=8)
def load_index(folder: str) -> FaqIndex:
    """A KB version's files (immutable once written, so cached by folder)."""
    path = Path(folder)
    meta = json.loads((path / "artifact.json").read_text())
    entries = [json.loads(line) for line in (path / "entries.jsonl").read_text(encoding="utf-8").splitlines()]
    ann = None
    if (path / "views.faiss").is_file():
        import faiss

        ann = faiss.read_index(str(path / "views.faiss"))
    # versions built before the hybrid rank have no "retrieval" entry: they are ranked the same way
    weight = meta.get("retrieval", {}).get("lexical_weight", LEXICAL_WEIGHT)
    return FaqIndex(entries, np.load(path / "vectors.npy"), np.load(path / "owners.npy"),
                    np.load(path / "kinds.npy"), meta, ann, lexical_weight=weight)


def _build_ann(vectors: np.ndarray, path: Path) -> None:
    import faiss

    index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.hnsw.efSearch = 128
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    faiss.write_index(index, str(path))


def probe_questions() -> list[str]:
    return [ln.strip() for ln in PROBES.read_text(encoding="utf-8").splitlines()
            if ln.strip() and not ln.startswith("#")]


def calibrate(index: FaqIndex, probes: list[str], probe_vectors: np.ndarray, settings: Settings) -> dict:
    """The threshold from the KB's own scores for off-topic questions (see the module docstring)."""
    best = np.array([hits[0][1] for hits in index.search(probes, probe_vectors, 1)])
    at_quantile = float(np.quantile(best, settings.faq_threshold_quantile))
    return {"method": "offtopic-probes", "threshold": round(max(settings.faq_threshold_floor, at_quantile), 4),
            "probes": int(len(best)), "quantile": settings.faq_threshold_quantile,
            "probe_score_at_quantile": round(at_quantile, 4), "floor": settings.faq_threshold_floor}


# --- building and asking ------------------------------------------------------------------------

def build_kb(data: str | Path | list[dict], name: str, *, question_col: str | None = None,
             answer_col: str | None = None, id_col: str | None = None, threshold: float | None = None,
             settings: Settings | None = None, store: ArtifactStore | None = None) -> dict:
    """Embed the pairs and register version N of knowledge base `name`; returns its summary."""
    settings = settings or get_settings()
    check_name(name, "knowledge base name")
    if threshold is not None and not 0 <= threshold <= 1:
        raise ValidationError(f"threshold must be between 0 and 1 (a cosine score), got {threshold}")
    entries = data if isinstance(data, list) else read_pairs(data, question_col, answer_col, id_col)
    store = store or ArtifactStore.from_settings(settings)
    texts, owners, kinds = views(entries)
    vectors = embed_texts(texts, settings)
    build = store.incoming_dir()
    index = FaqIndex(entries, vectors, owners, kinds, {})
    if len(entries) > settings.faq_exact_max_entries:
        _build_ann(vectors, build / "views.faiss")
    probes = probe_questions()
    calibration = (calibrate(index, probes, embed_texts(probes, settings), settings) if threshold is None
                   else {"method": "given", "threshold": threshold})
    with (build / "entries.jsonl").open("w", encoding="utf-8") as fh:
        for e in entries:
            fh.write(json.dumps(e, ensure_ascii=False) + "\n")
    for file, array in (("vectors.npy", vectors), ("owners.npy", owners), ("kinds.npy", kinds)):
        np.save(build / file, array)
    sha = entries_sha256(entries)
    meta = {"entries": len(entries), "views": len(texts), "embedding_model": settings.embedding_model,
            "dimensions": int(vectors.shape[1]), "threshold": calibration["threshold"],
            "calibration": calibration, "search": "hnsw" if (build / "views.faiss").exists() else "exact",
            "retrieval": {"rank": "cosine(question+answer) + lexical_weight × BM25(question+answer) / lexical_scale",
                          "lexical_weight": LEXICAL_WEIGHT, "lexical_scale": round(index.lexical.scale, 4),
                          "score": "best view cosine"},
            "source": str(data) if not isinstance(data, list) else "entries"}
    row = store.register(KIND, name, build, meta, data_sha256=sha)
    return {"name": row.name, "version": row.version, "stage": row.stage, **meta, "data_sha256": sha,
            "path": str(store.path(row))}


def entries_sha256(entries: list[dict]) -> str:
    """The content hash a KB version records as its data_sha256 (same pairs → same hash)."""
    return hashlib.sha256("\n".join(json.dumps(e, ensure_ascii=False, sort_keys=True)
                                     for e in entries).encode()).hexdigest()


def check_question(question, top_k: int = 3) -> str:
    if not isinstance(question, str) or not question.strip():
        raise ValidationError('question is empty; send {"question": "your question", "top_k": 3}')
    if not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise ValidationError(f"top_k must be a whole number from 1 to {MAX_TOP_K}, got {top_k!r}")
    return question.strip()


def ask(kb: str, question: str, top_k: int = 3, *, settings: Settings | None = None,
        store: ArtifactStore | None = None, models: Models | None = None) -> dict:
    """The best answers of knowledge base `kb` (NAME or NAME:VERSION) to `question`, the question embedded
    by `models` (default: this process's own) with the model the knowledge base was built with.

    {"answers": [{"id", "question", "answer", "score"}], "confident": bool, "kb", "version",
    "threshold"}: answers in hybrid rank order, each scored by its best view cosine; confident when the
    first one's score reaches the threshold, else "answers" is empty and "suggestions" holds the candidates.
    """
    question = check_question(question, top_k)
    settings = settings or get_settings()
    store = store or ArtifactStore.from_settings(settings)
    row = store.get(KIND, kb)
    index = load_index(str(store.path(row)))
    query = embed_texts([question], settings, index.meta["embedding_model"], models=models)
    hits = index.search([question], query, top_k)[0]
    threshold = float(index.meta["threshold"])
    found = [{"id": index.entries[i]["id"], "question": index.entries[i]["question"],
              "answer": index.entries[i]["answer"], "score": round(score, 4)} for i, score in hits]
    confident = bool(found) and found[0]["score"] >= threshold
    reply = {"kb": row.name, "version": row.version, "threshold": threshold, "confident": confident}
    if confident:
        return {"answers": found, **reply}
    return {"answers": [], **reply, "message": "no confident answer",
            "suggestions": [{k: a[k] for k in ("id", "question", "score")} for a in found]}


def list_kbs(settings: Settings | None = None) -> list[dict]:
    store = ArtifactStore.from_settings(settings)
    return [{"name": r.name, "version": r.version, "stage": r.stage, "entries": r.meta.get("entries"),
             "threshold": r.meta.get("threshold"), "created_at": r.created_at.isoformat()}
            for r in store.list(KIND)]
