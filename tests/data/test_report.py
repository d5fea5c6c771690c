"""write_report: a self-contained HTML file with both charts, safe with any text inside."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from modelshop.data import Dataset, profile_dataset, write_report
from modelshop.errors import ValidationError

PNG = b"\x89PNG\r\n\x1a\n"


def test_report_files_and_embedded_charts(tmp_path: Path) -> None:
    ds = Dataset(texts=["<script>alert(1)</script> hi", "<script>alert(1)</script> hi", "退款 请联系 13812345678",
                        "普通问题", "another one"],
                 labels=["垃圾", "垃圾", "退款", "咨询", "咨询"], multi_label=False, source="客服.csv")
    other = Dataset(texts=["another one"], labels=["咨询"], multi_label=False)
    profile = profile_dataset(ds, eval_ds=other)
    html_path = write_report(profile, tmp_path / "out", title="客服数据 <profile>")
    assert html_path == tmp_path / "out" / "report.html"
    for name in ("label_distribution.png", "length_histogram.png"):
        assert (tmp_path / "out" / name).read_bytes().startswith(PNG)
    html = html_path.read_text(encoding="utf-8")
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 2 and all(base64.b64decode(img).startswith(PNG) for img in images)
    assert "<script>" not in html and "&lt;script&gt;" in html  # dataset text is escaped
    assert "客服数据 &lt;profile&gt;" in html and "<td>退款</td>" in html
    assert "Train / eval leakage" in html and "personal data found" in html
    assert html.count("<li>") == len(profile["warnings"])


def test_report_without_labels_or_problems(tmp_path: Path) -> None:
    profile = profile_dataset(Dataset(texts=["one text", "another text here"], labels=[], multi_label=False))
    html = write_report(profile, tmp_path).read_text(encoding="utf-8")
    assert "No problems found." in html


def test_report_rejects_a_foreign_dict(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="profile lacks rows, labels, length"):
        write_report({"hello": 1}, tmp_path)
