"""The report's plots, drawn with matplotlib and returned as inline SVG elements.

`pipeline.report` puts each returned `<svg>` straight into its one HTML page, so the page
stays self-contained: no scripts, fonts or images from elsewhere (text is emitted as SVG
`<text>`, drawn in the reader's own sans-serif font, and the only references are to clip
paths inside the same `<svg>`).

Every data mark carries its numbers as attributes, so the page can be checked (and scraped)
without re-deriving values from pixel coordinates: a bar is `class="bar"` with `data-label`,
`data-value` (and `data-series` in grouped charts); a feature line is `class="mean"` or
`class="std"` with `data-values` (and `data-spread` for the mean ± std band, `class="band"`).

matplotlib is imported on the first plot only (Agg backend, nothing shown on screen), so
importing the report's modules costs nothing to callers that never draw.
"""

from __future__ import annotations

import functools
import io
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.artist import Artist

COLORS = ("#1f77b4", "#d95f02")
"""One colour per dataset: the first dataset, then the one given with --compare."""

_SVG_NS = "http://www.w3.org/2000/svg"
_DPI = 96  # the figure is sized in CSS pixels: width_px / 96 inches
_FONT_SIZE = 8.25  # points: 11 CSS pixels
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_RC = {
    "svg.fonttype": "none",  # <text> elements, not glyph outlines referenced with xlink:href
    "path.simplify": False,  # one vertex per feature dimension: the lines are exact
    "text.parse_math": False,  # a "$" in a label name (strangers write vocabularies) stays a dollar sign
    "text.usetex": False,
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],  # also the CSS font list of every <text>
    "font.size": _FONT_SIZE,
    "axes.edgecolor": "#bbbbbb",
    "axes.linewidth": 0.8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "grid.color": "#e4e4e4",
    "svg.image_inline": True,
}


def _text(value: object, limit: int | None = None) -> str:
    """Text safe to put in XML (no control characters, no lone surrogates), shortened with an ellipsis."""
    text = _XML_INVALID.sub("\ufffd", str(value))
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "\u2026"
    return text


class _Figure:
    """One matplotlib figure of a fixed size in pixels, plus the attributes its marks carry in the SVG."""

    def __init__(self, plot_id: str, title: str, width: float, height: float, margins: tuple[float, ...]):
        # Figure() on an Agg canvas rather than pyplot: no global figure registry or backend switch, nothing
        # to close (matplotlib's documented way to draw in a server).
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=import-outside-toplevel
        from matplotlib.figure import Figure  # pylint: disable=import-outside-toplevel

        self.plot_id, self.title, self.width, self.height = plot_id, title, width, height
        self.fig = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
        FigureCanvasAgg(self.fig)
        left, right, top, bottom = margins
        self.fig.subplots_adjust(left=left / width, right=1 - right / width, top=1 - top / height,
                                 bottom=bottom / height)
        self.ax = self.fig.add_subplot()
        self._marks: dict[str, tuple[dict[str, str], str]] = {}

    def mark(self, artist: Artist, kind: str, tooltip: str, **data: object) -> None:
        """Names `artist` in the SVG and records the class, data-* attributes and tooltip it gets there."""
        gid = f"{self.plot_id}.m{len(self._marks)}"  # "." never occurs in a plot id
        artist.set_gid(gid)
        attrs = {"class": kind}
        attrs.update({f"data-{key.replace('_', '-')}": _text(value) for key, value in data.items()})
        self._marks[gid] = (attrs, _text(tooltip))

    def legend(self, names: Sequence[str]) -> None:
        handles = [self._legend_patch(COLORS[i % len(COLORS)]) for i in range(len(names))]
        self.fig.legend(handles, [_text(n, 60) for n in names], loc="upper left", bbox_to_anchor=(0.07, 1.0),
                        frameon=False, ncols=1, handlelength=0.9, borderaxespad=0.2)

    @staticmethod
    def _legend_patch(color: str):
        from matplotlib.patches import Patch  # pylint: disable=import-outside-toplevel

        return Patch(facecolor=color)

    def svg(self) -> str:
        """The figure as one `<svg>` element for inline use: sized in pixels, titled, marks annotated."""
        buffer = io.StringIO()
        self.fig.savefig(buffer, format="svg", metadata={"Date": None})
        ET.register_namespace("", _SVG_NS)
        ET.register_namespace("xlink", "http://www.w3.org/1999/xlink")
        root = ET.fromstring(buffer.getvalue())
        for child in list(root):
            if child.tag == f"{{{_SVG_NS}}}metadata":  # RDF boilerplate; the page says who drew it
                root.remove(child)
        # matplotlib names its groups figure_1, axes_1, patch_2, ... in every figure: ids that would repeat
        # across the page's plots. Only the marks' ids and what the SVG itself references (clip paths,
        # salted by plot id) are kept.
        referenced = set(re.findall(r"url\(#([^)]+)\)|href=\"#([^\"]+)\"", buffer.getvalue()))
        keep = {name for pair in referenced for name in pair if name} | set(self._marks)
        for element in root.iter():
            gid = element.get("id")
            if gid is not None and gid not in keep:
                del element.attrib["id"]
            if gid in self._marks:
                attrs, tooltip = self._marks[gid]
                for key, value in attrs.items():
                    element.set(key, value)
                title = ET.Element(f"{{{_SVG_NS}}}title")
                title.text = tooltip
                element.insert(0, title)
        root.set("id", self.plot_id)
        root.set("class", "plot")
        root.set("width", f"{self.width:g}")
        root.set("height", f"{self.height:g}")
        root.set("role", "img")
        root.set("aria-label", _text(self.title))
        title = ET.Element(f"{{{_SVG_NS}}}title")
        title.text = _text(self.title)
        root.insert(0, title)
        return ET.tostring(root, encoding="unicode")


def _styled(draw: Callable[..., str]) -> Callable[..., str]:
    """Runs a chart function under the report's matplotlib settings, with SVG ids salted by its plot id.

    The salt makes the clip-path ids of one page unique across its plots and the same on every run.
    """

    @functools.wraps(draw)
    def wrapper(plot_id: str, *args, **kwargs) -> str:
        import matplotlib  # pylint: disable=import-outside-toplevel

        with matplotlib.rc_context({**_RC, "svg.hashsalt": plot_id}):
            return draw(plot_id, *args, **kwargs)

    return wrapper


@_styled
def hbar_chart(plot_id: str, title: str, items: list[tuple[str, float]], *, color: str = COLORS[0],
               width: int = 820) -> str:
    """One horizontal bar per category (label, failure reason): names stay readable at any count."""
    row = 18
    names = [_text(label, 45) for label, _ in items]
    label_w = min(300, 14 + 6.3 * max((len(n) for n in names), default=4))
    height = 8 + row * len(items) + 8
    fig = _Figure(plot_id, title, width, height, margins=(label_w, 70, 8, 8))
    ax = fig.ax
    values = [value for _, value in items]
    positions = np.arange(len(items))
    bars = ax.barh(positions, values, height=(row - 4) / row, color=color)
    for bar, (label, value) in zip(bars, items, strict=True):
        fig.mark(bar, "bar", f"{label}: {value:,g}", label=label, value=f"{value:g}")
    ax.bar_label(bars, labels=[f"{value:,g}" for value in values], padding=4)
    ax.set_yticks(positions, names)
    ax.set_ylim(len(items) - 0.5, -0.5)  # first item on top, one row per item
    ax.set_xlim(0, (max(values, default=0) or 1))
    ax.tick_params(axis="y", length=0)
    ax.xaxis.set_visible(False)
    ax.spines["bottom"].set_visible(False)
    ax.spines["left"].set_color("#444444")
    return fig.svg()


@_styled
def histogram_chart(plot_id: str, title: str, bin_labels: list[str], series: list[tuple[str, list[float]]], *,
                    y_label: str, width: int = 820, height: int = 280) -> str:
    """Vertical grouped bars, one group per bin and one bar per dataset in it."""
    fig = _Figure(plot_id, title, width, height, margins=(58, 16, 14 + 16 * len(series), 46))
    ax = fig.ax
    positions = np.arange(len(bin_labels))
    bar_w = 0.84 / max(len(series), 1)
    for s, (name, values) in enumerate(series):
        offsets = positions - 0.42 + bar_w * (s + 0.5)
        bars = ax.bar(offsets, values, width=bar_w, color=COLORS[s % len(COLORS)])
        for bar, label, value in zip(bars, bin_labels, values, strict=True):
            fig.mark(bar, "bar", f"{name}, {label} steps: {value:,g}", series=s, label=label, value=f"{value:g}")
    every = max(1, math.ceil(len(bin_labels) / 12))
    ax.set_xticks(positions[::every], [_text(b) for b in bin_labels[::every]])
    ax.set_xlim(-0.5, len(bin_labels) - 0.5)
    ax.set_ylim(0, None)
    ax.grid(axis="y")
    ax.set_axisbelow(True)
    ax.set_xlabel("steps (seconds) per clip")
    ax.set_ylabel(y_label)
    fig.legend([name for name, _ in series])
    return fig.svg()


@_styled
def line_chart(plot_id: str, title: str, series: list[tuple[str, np.ndarray, np.ndarray | None]], *, kind: str,
               y_label: str, width: int = 820, height: int = 300) -> str:
    """Per-dimension lines, with a translucent mean ± std band when a spread is given.

    `kind` names the plotted quantity ("mean" or "std"); it becomes the class of each line so
    readers (and tests) can pick the series out.
    """
    fig = _Figure(plot_id, title, width, height, margins=(58, 16, 14 + 16 * len(series), 40))
    ax = fig.ax
    dims = max((len(v) for _, v, _ in series), default=1)
    for i, (name, values, spread) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        x = np.arange(len(values))
        data = {"series": i, "values": ",".join(f"{v:.6f}" for v in values)}
        if spread is not None:
            band = ax.fill_between(x, values - spread, values + spread, color=color, alpha=0.18, linewidth=0)
            fig.mark(band, "band", f"{name}: mean ± std", series=i)
            data["spread"] = ",".join(f"{v:.6f}" for v in spread)
        (line,) = ax.plot(x, values, color=color, linewidth=1)
        fig.mark(line, kind, name, **data)
    ax.set_xlim(0, max(dims - 1, 1))
    ax.grid(axis="y")
    ax.set_axisbelow(True)
    ax.set_xlabel("feature dimension")
    ax.set_ylabel(y_label)
    fig.legend([name for name, _, _ in series])
    return fig.svg()
