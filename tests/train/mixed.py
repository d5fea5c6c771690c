"""Mixed English and Chinese delivery/refund messages, for the tests of figures per language and of the
combined model."""

from __future__ import annotations

import json
from pathlib import Path

# (language, label) → message starts and ends; every start with every end makes distinct messages
STARTS = {
    ("en", "delivery"): ["Where is my parcel", "My package has not arrived", "When will my order be delivered",
                         "The courier lost my delivery", "Tracking shows no update for my shipment"],
    ("en", "refund"): ["I want my money back", "Please refund my order", "Can I get a refund for this",
                       "Return the item and refund me", "You promised me a refund"],
    ("zh", "delivery"): ["我的快递还没到", "包裹到哪里了", "订单什么时候送到", "物流信息一直没有更新",
                         "快递员把我的包裹弄丢了"],
    ("zh", "refund"): ["我要退款", "请把钱退给我", "这个订单能退款吗", "退货以后什么时候退钱",
                       "答应给我的退款还没收到"],
}
ENDS = {"en": ["", ", it has been a week", ", please help", " and nobody answers", ", I am waiting",
               ", thanks in advance"],
        "zh": ["", "，已经一周了", "，请帮忙看看", "，没人回复", "，我一直在等", "，谢谢"]}


def write_mixed(folder: Path) -> tuple[Path, Path]:
    """English and Chinese delivery/refund messages: 80 to train on, 20 per language to evaluate on."""
    train, evaluation = [], []
    for (lang, label), starts in STARTS.items():
        texts = [s + e for e in ENDS[lang] for s in starts]  # eval: every start, with the last two ends
        train += [{"text": t, "label": label} for t in texts[:20]]
        evaluation += [{"text": t, "label": label} for t in texts[20:]]
    paths = folder / "mixed-train.jsonl", folder / "mixed-eval.jsonl"
    for path, rows in zip(paths, (train, evaluation), strict=True):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return paths


MORE_ENDS = {"en": [", it is urgent", " again", ", what now", ", order 4512"],
             "zh": ["，很着急", "，又来了", "，怎么办", "，订单4512"]}


def mixed_rows(langs: tuple[str, ...] = ("en", "zh")) -> list[dict]:
    """Every start with every end (ENDS and MORE_ENDS): 50 messages per language and label."""
    return [{"text": s + e, "label": label} for (lang, label), starts in STARTS.items() if lang in langs
            for e in ENDS[lang] + MORE_ENDS[lang] for s in starts]
