"""Small files written to tmp_path, in the formats and encodings users bring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

EN = [
    ("I love this phone, the battery lasts for days", "positive"),
    ("Terrible service, I want a refund", "negative"),
    ("The screen is bright and sharp", "positive"),
    ("It broke after one week", "negative"),
]
ZH = [
    ("这个手机很好用，电池很耐用", "正面"),
    ("服务太差了，我要退款", "负面"),
    ("屏幕清晰，颜色鲜艳", "正面"),
    ("用了一周就坏了", "负面"),
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


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
