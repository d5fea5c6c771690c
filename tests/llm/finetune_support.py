"""What the fine-tuning tests share: question–answer pairs in the tiny Llama's vocabulary (tests/support.py's
TINY_CORPUS), writing them as files, and torch on one thread (a 64-wide model is all overhead on two)."""

from __future__ import annotations

import contextlib
import csv
import json
from collections.abc import Iterator
from pathlib import Path

import torch

PAIRS = [("How do I reset my password?", "Open Settings and choose Security."),
         ("When will my order arrive?", "Your order has shipped and will arrive on Monday."),
         ("How long do refunds take?", "Refunds take five business days."),
         ("Can I talk to a person?", "A person from our team will reply soon."),
         ("Hello!", "Hello! How can I help you today?"),
         ("Thank you", "Thank you for your patience."),
         ("Where is my refund?", "Refunds take five business days. Thank you for your patience."),
         ("Who can I write to?", "Write to help@example.com and a person from our team will reply soon.")]


def write_pairs(path: Path, pairs=PAIRS, keys: tuple[str, str] = ("question", "answer")) -> Path:
    """`pairs` as JSONL (or CSV, by the suffix) with the two columns `keys`."""
    rows = [dict(zip(keys, pair)) for pair in pairs]
    if path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(keys))
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_chats(path: Path, conversations: list[list[dict]]) -> Path:
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations), encoding="utf-8")
    return path


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
