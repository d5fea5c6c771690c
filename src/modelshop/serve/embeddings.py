"""Sentence embeddings for `/v1/embeddings`, FAQ answering and recommendation.

`Embedder` is all-MiniLM-L6-v2 (the base `minilm` weights, no classification head) or any local
BERT-family folder: token embeddings mean-pooled over the attention mask, then L2-normalised, as
sentence-transformers does for this model. The server batches it like any other model (it has the
transformer interface: `.tokenizer`, `.max_length`, `.forward()`). Outside a server, `load_embedder`
keeps one per process and model name (`DirectModels` and `embed(texts)` use it); a server embeds only
with its pool's one (`PooledModels`), never with these.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from modelshop.errors import ValidationError
from modelshop.settings import Settings, get_settings

# Names a client may send as `model` for the minilm embedder (OpenAI clients require one).
MINILM_NAMES = ("minilm", "all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")


def embedding_source(name: str) -> str:
    """The folder behind an `embedding_model` setting: minilm → the packaged weights, else a folder."""
    if name == "minilm":
        from modelshop.train.base_models import minilm_path

        return minilm_path()
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise ValidationError(f'embedding model "{name}" is neither minilm nor a folder with config.json; '
                              "set MODELSHOP_EMBEDDING_MODEL to minilm or such a folder")
    return str(path)


def embedding_ref(name: str) -> str:
    """The name an embedding model is served and metered under: minilm, or its folder's name."""
    return "minilm" if name == "minilm" else Path(name).name


def accepts(configured: str, asked: str | None) -> bool:
    """Whether a server embedding with `configured` serves a request for `asked` (None: the default)."""
    names = MINILM_NAMES if configured == "minilm" else (configured,)
    return asked is None or asked in names or asked == configured.rstrip("/").rsplit("/", 1)[-1]


class Embedder:
    """Mean-pooled, L2-normalised sentence embeddings from a BERT-family encoder."""

    family = "embedding"
    format = "pytorch"

    def __init__(self, source: str, *, name: str = "minilm", threads: int | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.name = name
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        self.model = AutoModel.from_pretrained(source).eval()
        self.dimensions = int(self.model.config.hidden_size)
        self.max_length = _max_seq_length(Path(source), self.tokenizer, self.model.config)
        self.input_names = list(self.tokenizer.model_input_names)

    def forward(self, batch: dict) -> np.ndarray:
        """One unit vector per row of a padded batch."""
        import torch

        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1).float().numpy()

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens each text is given to the model as (special tokens included, truncated to max_length)."""
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        return [len(row) for row in ids]

    def embed(self, texts: list[str], *, batch_size: int = 64) -> np.ndarray:
        """Embeddings of `texts` in input order (truncated to max_length), shape (n, dimensions)."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        for start in range(0, len(texts), batch_size):
            idx = order[start:start + batch_size]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            out[idx] = self.forward(dict(enc))
        return out


def _max_seq_length(source: Path, tokenizer, config) -> int:
    """sentence-transformers' own limit when the folder says it (256 for minilm), else the model's."""
    st = source / "sentence_bert_config.json"
    if st.is_file():
        value = json.loads(st.read_text()).get("max_seq_length")
        if value:
            return int(value)
    limits = [getattr(config, "max_position_embeddings", 512), tokenizer.model_max_length, 512]
    return int(min(x for x in limits if x))


@functools.lru_cache(maxsize=2)
def load_embedder(name: str = "minilm", threads: int | None = None) -> Embedder:
    """One embedder per process and model name (loading takes a second)."""
    return Embedder(embedding_source(name), name=name, threads=threads)


def embed(texts: list[str], *, settings: Settings | None = None) -> np.ndarray:
    """Unit-length sentence embeddings of `texts` (n × 384 for minilm); cosine similarity is a dot product."""
    settings = settings or get_settings()
    if isinstance(texts, str):
        raise ValidationError("embed() takes a list of texts; wrap a single text in a list")
    return load_embedder(settings.embedding_model, settings.torch_threads).embed(list(texts))
