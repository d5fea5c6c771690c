"""`write_report`: a profile dict → report.html with its two charts, readable offline.

Writes `report.html`, `label_distribution.png` and `length_histogram.png` into `out_dir`; the
PNGs are also embedded in the HTML as base64, so the HTML file alone is the whole report.
Charts use matplotlib's object API on the Agg canvas (no pyplot, no global backend switch).
matplotlib ships no Chinese font: a CJK font is used when one is installed, otherwise the chart
draws boxes for CJK labels and the tables in the HTML, drawn by the browser, show them right.
"""

from __future__ import annotations

import base64
import io
import json
import warnings
from importlib.resources import files
from pathlib import Path
from typing import Any

from modelshop.errors import ValidationError

_CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Micro Hei",
              "WenQuanYi Zen Hei", "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC",
              "Arial Unicode MS")
_MAX_BARS = 40
_REQUIRED = ("rows", "labels", "length", "recommended_max_length", "warnings")


def write_report(profile: dict, out_dir: Path, *, title: str = "Data profile") -> Path:
    """Write the HTML report and its charts into `out_dir`; returns the path of report.html."""
    missing = [key for key in _REQUIRED if key not in profile]
    if missing:
        raise ValidationError(f"profile lacks {', '.join(missing)}; pass the dict profile_dataset returns")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    charts = {}
    for name, draw in (("label_distribution", _label_chart), ("length_histogram", _length_chart)):
        png = _render(draw, profile)
        (out_dir / f"{name}.png").write_bytes(png)
        charts[name] = base64.b64encode(png).decode("ascii")
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.from_string(files(__package__).joinpath("report.html").read_text("utf-8"))
    html = template.render(title=title, p=profile, charts=charts, max_bars=_MAX_BARS,
                           profile_json=json.dumps(profile, ensure_ascii=False, indent=2))
    path = out_dir / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


def _render(draw: Any, profile: dict) -> bytes:
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.rc_context(_font_rc()), warnings.catch_warnings():
        # Without a CJK font, Chinese labels draw as boxes; the HTML tables carry the text.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
        FigureCanvasAgg(fig)
        draw(fig, profile)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    return buf.getvalue()


def _font_rc() -> dict:
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    cjk = [name for name in _CJK_FONTS if name in installed]
    return {"font.sans-serif": cjk + ["DejaVu Sans"]} if cjk else {}


def _label_chart(fig: Any, profile: dict) -> None:
    counts = list(profile["labels"].items())[:_MAX_BARS]
    ax = fig.add_subplot()
    if not counts:
        ax.text(0.5, 0.5, "no labels", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    fig.set_size_inches(8, min(12, 1.5 + 0.3 * len(counts)))
    names = [name for name, _ in reversed(counts)]
    values = [n for _, n in reversed(counts)]
    ax.barh(names, values, color="#4c72b0")
    ax.set_xlabel("rows")
    shown = "" if len(profile["labels"]) <= _MAX_BARS else f" (top {_MAX_BARS})"
    ax.set_title(f"Label distribution{shown}, imbalance ratio {profile.get('imbalance_ratio')}")


def _length_chart(fig: Any, profile: dict) -> None:
    length = profile["length"]
    edges, counts = length["histogram"]["edges"], length["histogram"]["counts"]
    ax = fig.add_subplot()
    ax.bar(edges[:-1], counts, width=edges[1] - edges[0], align="edge", color="#55a868",
           edgecolor="white")
    for x, label, style in ((length["p95"], "p95", ":"),
                            (profile["recommended_max_length"], "recommended max_length", "--")):
        ax.axvline(x, color="#c44e52", linestyle=style, label=f"{label} = {x}")
    ax.legend()
    ax.set_xlabel("tokens per text")
    ax.set_ylabel("texts")
    ax.set_title(f"Token lengths ({profile.get('tokenizer', '')})"[:90])
