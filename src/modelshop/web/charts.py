"""Charts drawn on the server with matplotlib and embedded in the page as SVG data URIs.

No JavaScript, no CDN: each function takes plain figures (strings from the library are turned
into numbers here, for drawing only) and returns an `<img src>` value. Text stays text in the
SVG (`svg.fonttype: none`), so the browser draws Chinese channel names with its own fonts.
"""

from __future__ import annotations

import base64
import io

import matplotlib
from matplotlib.figure import Figure

COLORS = ("#2f6fdf", "#e0812b", "#3a9d5d", "#c0392b", "#8e5cc4", "#7f8c8d")


def _uri(fig: Figure) -> str:
    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 9}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()


def _num(value) -> float:
    try:
        return float(value) if value not in (None, "") else 0.0
    except (TypeError, ValueError):
        return 0.0


def funnel(stages: list[tuple[str, int]], title: str = "") -> str:
    """Horizontal bars, top stage first, each labelled with its count and share of the first."""
    fig = Figure(figsize=(6, 0.45 * len(stages) + 0.8))
    ax = fig.add_subplot()
    names, counts = [s for s, _ in stages][::-1], [c for _, c in stages][::-1]
    ax.barh(names, counts, color=COLORS[0])
    top = stages[0][1] if stages and stages[0][1] else 0
    for y, c in enumerate(counts):
        share = f" ({100 * c / top:.0f}%)" if top else ""
        ax.text(c, y, f" {c}{share}", va="center")
    ax.set_xlim(0, max(counts + [1]) * 1.25)
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    return _uri(fig)


def grouped(categories: list[str], series: dict[str, list], title: str = "", ylabel: str = "") -> str:
    """Grouped bars: one group per category, one bar per series."""
    fig = Figure(figsize=(max(5, 0.9 * len(categories) + 2), 3.2))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [x + i * width for x in range(len(categories))]
        ax.bar(xs, [_num(v) for v in values], width, label=name, color=COLORS[i % len(COLORS)])
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(categories))], categories,
                  rotation=30 if len(categories) > 6 else 0, ha="right" if len(categories) > 6 else "center")
    ax.axhline(0, color="#555", linewidth=0.6)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    return _uri(fig)


def over_time(months: list[str], bars: tuple[str, list], line: tuple[str, list], title: str = "") -> str:
    """Bars on the left axis (e.g. revenue) and a line on the right one (e.g. requests) per month."""
    fig = Figure(figsize=(7, 3))
    ax = fig.add_subplot()
    ax.bar(months, [_num(v) for v in bars[1]], color=COLORS[0], label=bars[0])
    ax.set_ylabel(bars[0])
    ax.tick_params(axis="x", rotation=45)
    right = ax.twinx()
    right.plot(months, [_num(v) for v in line[1]], color=COLORS[1], marker="o", label=line[0])
    right.set_ylabel(line[0])
    ax.set_title(title)
    return _uri(fig)


def heatmap(rows: list[str], matrix: list[list], title: str = "") -> str:
    """A retention matrix: rows are cohorts, columns months since signup, cells shares 0..1."""
    width = max((len(r) for r in matrix), default=1)
    data = [[_num(v) if v is not None else float("nan") for v in r] + [float("nan")] * (width - len(r))
            for r in matrix]
    fig = Figure(figsize=(0.5 * width + 2.5, 0.3 * len(rows) + 1.2))
    ax = fig.add_subplot()
    ax.imshow(data or [[0.0]], cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xticks(range(width), [str(k) for k in range(width)])
    ax.set_xlabel("months since signup")
    for y, r in enumerate(data):
        for x, v in enumerate(r):
            if v == v:  # not NaN
                ax.text(x, y, f"{v * 100:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if v > 0.6 else "black")
    ax.set_title(title)
    return _uri(fig)
