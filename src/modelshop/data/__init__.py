"""Node A–C of the diagram: user data in, analysed, cleaned and split, ready for training.

    load      files (CSV/TSV, JSONL/JSON, Parquet, FOLDER/LABEL/*.txt) → Dataset
    profile   Dataset → JSON-ready dict of what it holds and what is wrong with it
    report    profile → report.html with charts
    clean     normalise, redact personal data (pii), drop empties and duplicates
    split     seeded stratified train/test split
    tokens    token lengths and the recommended max_length
    languages the language of each text (lingua) and the tokenizer's coverage of each language

Imports only `modelshop.errors` from the rest of modelshop. torch is never imported; pandas,
pyarrow, matplotlib, jinja2 and lingua only inside the functions that need them.
"""

from .clean import clean_dataset
from .dataset import Dataset
from .languages import detect_languages
from .load import load_dataset
from .normalize import normalize_text
from .pii import find_pii, redact_pii
from .profile import profile_dataset
from .report import write_report
from .split import stratified_split
from .tasks import clean_file, profile_file
from .tokens import recommend_max_length, token_lengths

__all__ = [
    "Dataset",
    "clean_dataset",
    "clean_file",
    "detect_languages",
    "find_pii",
    "load_dataset",
    "normalize_text",
    "profile_dataset",
    "profile_file",
    "recommend_max_length",
    "redact_pii",
    "stratified_split",
    "token_lengths",
    "write_report",
]
