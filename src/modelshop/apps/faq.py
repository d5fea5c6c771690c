"""FAQ question answering: a knowledge base (KB) of question–answer pairs searched with sentence embeddings.

How an entry is scored. Each entry is embedded (mean-pooled, normalised minilm) as several views:
its question, its question + answer, and its question + each sentence of its answer (a "passage").
A user question's score for an entry is the best cosine over the entry's views. The question view
matches questions asked as written; the passages match a question about one detail of a long
answer, which the single question+answer vector averages away. Measured on hand-written
rewordings of `faq_en` (`benchmarks/faq_eval.py`): recall@1 0.874 / recall@3 0.951 against
0.845 / 0.922 for one question+answer vector per entry. A BM25 score fused in did not help on
rewordings (people reword precisely by changing words), so there is none.

Confidence. A KB's threshold is calibrated from its own scores: the bundled off-topic questions
(`data/offtopic_questions.txt`) are asked, and the threshold is the `faq_threshold_quantile` of
their best scores, never below `faq_threshold_floor`. Below it, `ask` answers "no confident answer"
(the candidates are returned as suggestions, without answer text) instead of a wrong answer.
With minilm the floor (0.5) decides for most KBs: on `faq_en` 99% of the rewordings are answered
confidently and 3% of off-topic customer-service messages are.

Search is exact (numpy, one matrix product) up to `faq_exact_max_entries` entries; larger KBs also
get an HNSW index (faiss) over the views and answer from it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
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


# --- the index ----------------------------------------------------------------------------------

@dataclass
class FaqIndex:
    """The loaded files of one KB version: entries, view vectors (grouped by entry), the ANN index."""

    entries: list[dict]
    vectors: np.ndarray      # (views, dims) float32, unit length
    owners: np.ndarray       # (views,) entry of each view
    kinds: np.ndarray        # (views,) VIEW_*
    meta: dict
    ann: object | None = None

    @property
    def starts(self) -> np.ndarray:
        return np.flatnonzero(np.r_[True, self.owners[1:] != self.owners[:-1]])

    def entry_scores(self, queries: np.ndarray, kinds: tuple[int, ...] | None = None) -> np.ndarray:
        """Exact scores (queries × entries): each entry's best view; `kinds` limits the views used."""
        sims = queries @ self.vectors.T
        if kinds is not None:
            sims = np.where(np.isin(self.kinds, kinds)[None, :], sims, -np.inf)
        return np.maximum.reduceat(sims, self.starts, axis=1)

    def search(self, queries: np.ndarray, top_k: int) -> list[list[tuple[int, float]]]:
        """The best `top_k` (entry, score) per query, best first."""
        top_k = min(top_k, len(self.entries))
        if self.ann is None:
            scores = self.entry_scores(queries)
            out = []
            for row in scores:
                idx = np.argpartition(-row, top_k - 1)[:top_k]
                idx = idx[np.argsort(-row[idx], kind="stable")]
                out.append([(int(i), float(row[i])) for i in idx])
            return out
        # approximate: the nearest views, then each entry's best view among them
        wanted = min(len(self.owners), max(64, top_k * 16))
        sims, ids = self.ann.search(np.ascontiguousarray(queries, dtype=np.float32), wanted)
        out = []
        for srow, irow in zip(sims, ids):
            best: dict[int, float] = {}
            for s, v in zip(srow, irow):
                if v >= 0:
                    e = int(self.owners[v])
                    best[e] = max(best.get(e, -1.0), float(s))
            out.append(sorted(best.items(), key=lambda kv: -kv[1])[:top_k])
        return out


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
    return FaqIndex(entries, np.load(path / "vectors.npy"), np.load(path / "owners.npy"),
                    np.load(path / "kinds.npy"), meta, ann)


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


def calibrate(index: FaqIndex, probe_vectors: np.ndarray, settings: Settings) -> dict:
    """The threshold from the KB's own scores for off-topic questions (see the module docstring)."""
    best = np.array([hits[0][1] for hits in index.search(probe_vectors, 1)])
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
    calibration = (calibrate(index, embed_texts(probe_questions(), settings), settings) if threshold is None
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
    "threshold"}; when not confident, "answers" is empty and "suggestions" holds the candidates.
    """
    question = check_question(question, top_k)
    settings = settings or get_settings()
    store = store or ArtifactStore.from_settings(settings)
    row = store.get(KIND, kb)
    index = load_index(str(store.path(row)))
    query = embed_texts([question], settings, index.meta["embedding_model"], models=models)
    hits = index.search(query, top_k)[0]
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
