"""Small files written to tmp_path, in the formats and encodings users bring (their rows: samples.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.samples import EN, ZH
from tests.support import write_jsonl


@pytest.fixture
def en_csv(tmp_path: Path) -> Path:
    path = tmp_path / "en.csv"
    lines = ["text,label"] + [f'"{t}",{lab}' for t, lab in EN]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def zh_jsonl(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "zh.jsonl", [{"文本": t, "标签": lab} for t, lab in ZH])


@pytest.fixture
def multi_jsonl(tmp_path: Path) -> Path:
    rows = [
        {"text": "refund my order and cancel the plan", "labels": ["refund", "cancel"]},
        {"text": "how do I cancel", "labels": ["cancel"]},
        {"text": "the app crashes on start", "labels": ["bug"]},
        {"text": "crash after refund request", "labels": ["bug", "refund", "bug"]},
    ]
    return write_jsonl(tmp_path / "multi.jsonl", rows)
