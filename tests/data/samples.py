"""The rows of the data tests' small files: English and Chinese texts with their labels."""

from __future__ import annotations

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
