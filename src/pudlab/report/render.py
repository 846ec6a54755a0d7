"""The report's building blocks and their two renderings: Markdown and self-contained HTML.

A report is a list of :class:`Block`; every number in a table goes through :func:`fmt` so that the
whole document uses one number format.
"""

from __future__ import annotations

import base64
import html
import math
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LEGEND_KEY = "pudlab:legend_pt"
"""PNG text chunk: the smallest legend font size of the figure, in points (written by ``save_figure``)."""
DPI_KEY = "pudlab:dpi"
"""PNG text chunk: the figure's resolution, pixels per inch."""
VERDICT_CSS = {"reproduced": "ok", "not reproduced": "bad", "inconclusive": "unsure", "not evaluated": "muted"}


@dataclass
class Block:
    """One piece of the report.

    ``kind``: heading | text | table | figures | details | code | glossary. ``content`` per kind:
    heading/text/code: a string; table: ``(header, rows)``; figures: a list of ``(path, title,
    caption)`` or ``(path, title, caption, narrow path)`` (paths relative to the store; the narrow
    variant is shown on a narrow screen); details: a list of blocks, folded under ``title``;
    glossary: a list of ``(symbol, meaning)``.
    """

    kind: str
    content: object
    level: int = 2
    title: str = ""
    anchor: str = ""
    css: str = ""
    notes: list[str] = field(default_factory=list)


def _table(block: Block) -> tuple[list[str], list[list[object]]]:
    """``(header, rows)`` of a table block."""
    content = block.content
    if not (isinstance(content, tuple) and len(content) == 2):
        raise TypeError(f"a {block.kind} block holds (header, rows), got {type(content).__name__}")
    header, rows = content
    return list(header), [list(row) for row in rows]


def _items(block: Block) -> list[Any]:
    """The list a figures / glossary / details block holds."""
    if not isinstance(block.content, list):
        raise TypeError(f"a {block.kind} block holds a list, got {type(block.content).__name__}")
    return block.content


def _children(block: Block) -> list[Block]:
    """The blocks a details block folds."""
    children = _items(block)
    if not all(isinstance(child, Block) for child in children):
        raise TypeError("a details block holds a list of blocks")
    return children


def fmt(value: object) -> str:
    """One number format for the whole report: 3 significant decimals, thousands separated.

    >>> [fmt(v) for v in (None, float("nan"), 0.0, 0.91234, 3.14159, 12.345, 54000, 1234.5, 2e-5, True)]
    ['–', '–', '0', '0.912', '3.14', '12.3', '54,000', '1,234', '2.0e-05', 'yes']
    """
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "∞" if value > 0 else "-∞"
        magnitude = abs(float(f"{value:.3g}"))  # after rounding: 99.96 is 100, not 100.0
        if magnitude == 0:
            return "0"
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        if magnitude >= 1:
            return f"{value:.2f}"
        if magnitude >= 1e-3:
            return f"{value:.3f}"
        return f"{value:.1e}"
    return str(value)


def mean_std(mean: float | None, std: float | None, n: int | None = None) -> str:
    """``mean ± std`` in the report's format: just the mean when std is missing, or 0 with ``n`` unknown
    or 1; ``± 0`` when ``n`` > 1 repeats agree exactly.

    >>> mean_std(0.454, 0.0, 3), mean_std(0.454, 0.0, 1), mean_std(0.454, 0.0021, 3)
    ('0.454 ± 0', '0.454', '0.454 ± 0.002')
    """
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or (isinstance(std, float) and math.isnan(std)) or (not std and (n or 0) <= 1):
        return fmt(float(mean))
    return f"{fmt(float(mean))} ± {fmt(float(std))}"


def slug(text: str) -> str:
    """An HTML anchor from a heading."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# ------------------------------------------------------------------------------------------ Markdown
def _md_cell(value: object) -> str:
    return (value if isinstance(value, str) else fmt(value)).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def render_markdown(blocks: list[Block]) -> str:
    """The report as Markdown (figures as relative image links; folded parts as <details>)."""
    lines: list[str] = []
    for block in blocks:
        if block.kind == "heading":
            lines += ["#" * block.level + " " + str(block.content), ""]
        elif block.kind == "text":
            lines += [str(block.content), ""]
        elif block.kind == "code":
            lines += ["```", str(block.content), "```", ""]
        elif block.kind == "table":
            lines += _md_table(*_table(block))
        elif block.kind == "glossary":
            lines += _md_table(["symbol", "meaning"], [list(item) for item in _items(block)])
        elif block.kind == "figures":
            for path, title, caption, *_ in _items(block):
                lines += [f"![{title}]({path})", "", f"*{title}.* {caption}", ""]
        elif block.kind == "details":
            lines += [f"<details><summary>{block.title}</summary>", "", render_markdown(_children(block)), "</details>",
                      ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ HTML
NARROW_SCREEN = 1000
"""Below this viewport width (CSS px) a figure with a narrow variant shows that one (panels stacked)."""
PHONE_SCREEN = 700
"""Below this viewport width the claims table stacks each claim as a card (no columns to squeeze)."""
MIN_LEGEND_PT = 8.0
"""The least legend font size a figure may show at its displayed size, in points."""

CSS = f"""
*{{box-sizing:border-box}}
body{{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1200px;margin:0 auto;padding:0.6em 1.2em;
 line-height:1.35;color:#222;font-size:15px;overflow-wrap:break-word}}
h1{{font-size:1.45em;margin:0.3em 0 0.2em}}h2{{font-size:1.2em;margin:1.4em 0 0.4em;border-bottom:1px solid #ddd}}
h3{{font-size:1.02em;margin:1em 0 0.3em}}p{{margin:0.35em 0}}
.scroll{{max-width:100%;overflow-x:auto}}
table{{border-collapse:collapse;margin:0.3em 0 0.9em;font-size:0.86em}}
td,th{{border:1px solid #d0d0d0;padding:2px 7px;text-align:left;vertical-align:top;overflow-wrap:anywhere}}
th{{background:#f3f3f3;overflow-wrap:normal}}td.num{{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}}
.ok{{color:#1a7f37;font-weight:600}}.bad{{color:#b42318;font-weight:600}}.unsure{{color:#9a6700;font-weight:600}}
.muted{{color:#777}}td.ok,td.bad,td.unsure,td.muted{{white-space:nowrap;overflow-wrap:normal}}
.note{{font-size:0.84em;color:#444}}
.grid{{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(470px,100%),1fr));gap:14px}}
figure{{margin:0;border:1px solid #e3e3e3;padding:6px;min-width:0}}figure.wide{{grid-column:1/-1}}
.pan{{max-width:100%;overflow-x:auto}}
figure img{{width:100%;height:auto;display:block}}figure img.phone{{display:none}}
figcaption{{font-size:0.8em;color:#333;margin-top:4px}}
pre{{background:#f6f6f6;padding:0.6em;white-space:pre-wrap;overflow-wrap:anywhere;font-size:0.78em}}
details{{margin:0.4em 0}}summary{{cursor:pointer;font-weight:600}}
.glossary td:first-child{{white-space:nowrap;font-family:ui-monospace,monospace}}
.summary{{font-size:0.95em}}
@media (max-width:{NARROW_SCREEN}px){{figure img.desk{{display:none}}figure img.phone{{display:block}}}}
@media (max-width:{PHONE_SCREEN}px){{
 body{{padding:0.5em 0.7em}}h1{{font-size:1.3em}}h2{{font-size:1.1em}}
 table.claims,table.claims tbody{{display:block;width:auto}}table.claims thead{{display:none}}
 table.claims tr{{display:flex;flex-wrap:wrap;align-items:baseline;border:1px solid #d0d0d0;margin:0 0 8px;
  padding:4px 8px}}
 table.claims td{{display:block;flex:1 1 100%;order:3;border:0;padding:1px 0;white-space:normal}}
 table.claims td[data-label]::before{{content:attr(data-label) ": ";color:#666;font-weight:400}}
 table.claims td[data-label="#"]{{flex:0 0 auto;order:0;margin-right:0.8em;font-weight:600}}
 table.claims td[data-label="#"]::before{{content:"claim "}}
 table.claims td[data-label="verdict"]{{flex:0 0 auto;order:1}}
 table.claims td[data-label="claim"]{{order:2}}
 table.claims td[data-label="verdict"]::before,table.claims td[data-label="claim"]::before{{content:none}}
 .glossary td:first-child{{white-space:normal}}
}}
"""


def _html_cell(value: object, tag: str = "td", label: str | None = None) -> str:
    text = value if isinstance(value, str) else fmt(value)
    css = VERDICT_CSS.get(str(value))
    if css is None and isinstance(value, (int, float)) and not isinstance(value, bool):
        css = "num"
    attributes = (f" class='{css}'" if css else "") + (f" data-label='{html.escape(label)}'" if label else "")
    return f"<{tag}{attributes}>{html.escape(text)}</{tag}>"


def _html_table(header: list[str], rows: list[list], css: str = "") -> str:
    """A table in a sideways-scrolling box; the cells of a claims table name their column (``data-label``),
    which a phone shows when it stacks the table."""
    attribute = f" class='{css}'" if css else ""
    labels: list[str | None] = list(header) if "claims" in css.split() else [None] * len(header)
    parts = [f"<div class='scroll'><table{attribute}><thead><tr>"
             + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead><tbody>"]
    parts += ["<tr>" + "".join(_html_cell(cell, label=label) for cell, label in zip(row, labels, strict=False))
              + "</tr>" for row in rows]
    return "\n".join(parts) + "</tbody></table></div>"


def png_text(png: bytes) -> dict[str, str]:
    """The ``tEXt`` / ``zTXt`` chunks of PNG bytes as a dict (empty when ``png`` is not a PNG)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        return {}
    found, offset = {}, 8
    while offset + 8 <= len(png):
        length = int.from_bytes(png[offset:offset + 4], "big")
        kind, data = png[offset + 4:offset + 8], png[offset + 8:offset + 8 + length]
        if kind == b"tEXt" and b"\0" in data:
            key, _, value = data.partition(b"\0")
            found[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"zTXt" and b"\0" in data:
            key, _, rest = data.partition(b"\0")
            found[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind in (b"IDAT", b"IEND"):
            break
        offset += 12 + length
    return found


WIDE_ASPECT = 2.2
"""A figure wider than this (width / height) spans the whole row of the figure grid."""
WIDE_PIXELS = 720
"""A figure with a legend wider than this (pixels) spans the whole row too: a grid cell would shrink its legend."""


def _size(png: bytes) -> tuple[int, int]:
    """Width and height of a PNG from its header ((0, 0) when it is not a PNG)."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or len(png) < 24:
        return 0, 0
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _aspect(png: bytes) -> float:
    """Width / height of a PNG from its header (1 when it is not a PNG)."""
    width, height = _size(png)
    return width / height if height else 1.0


def _img(raw: bytes, alt: str, css: str) -> str:
    """An embedded PNG; one that records its legend size (``pudlab:legend_pt``) carries it for the browser
    check and never shows narrower than what keeps that legend at :data:`MIN_LEGEND_PT` (it pans instead)."""
    text = png_text(raw)
    attributes = f" class='{css}'" if css else ""
    if LEGEND_KEY in text:
        legend, dpi = float(text[LEGEND_KEY]), float(text.get(DPI_KEY, "72"))
        least = math.ceil(_size(raw)[0] * MIN_LEGEND_PT / (legend * dpi / 96))
        attributes += f" data-legend-pt='{legend:g}' data-dpi='{dpi:g}' style='min-width:{least}px'"
    data = base64.b64encode(raw).decode()
    return f"<img{attributes} alt='{html.escape(alt)}' src='data:image/png;base64,{data}'>"


def _html_figure(root: Path, item: tuple) -> str:
    """One figure of a figures block: ``(path, title, caption)`` or ``(path, title, caption, narrow path)``."""
    path, title, caption, *rest = item
    raw = (root / path).read_bytes()
    narrow = (root / rest[0]).read_bytes() if rest and rest[0] else None
    wide = _aspect(raw) > WIDE_ASPECT or (LEGEND_KEY in png_text(raw) and _size(raw)[0] > WIDE_PIXELS)
    images = _img(raw, title, "desk" if narrow else "")
    if narrow is not None:
        images += _img(narrow, title, "phone")
    css = " class='wide'" if wide else ""
    return (f"<figure{css}><div class='pan'>{images}</div>"
            f"<figcaption><b>{html.escape(title)}.</b> {html.escape(caption)}</figcaption></figure>")


def _html_blocks(blocks: list[Block], root: Path) -> list[str]:
    parts: list[str] = []
    for block in blocks:
        if block.kind == "heading":
            anchor = block.anchor or slug(str(block.content))
            parts.append(f"<h{block.level} id='{anchor}'>{html.escape(str(block.content))}</h{block.level}>")
        elif block.kind == "text":
            css = f" class='{block.css}'" if block.css else ""
            parts.append(f"<p{css}>{html.escape(str(block.content))}</p>")
        elif block.kind == "code":
            parts.append(f"<pre>{html.escape(str(block.content))}</pre>")
        elif block.kind == "table":
            header, rows = _table(block)
            parts.append(_html_table(header, rows, block.css))
        elif block.kind == "glossary":
            parts.append(_html_table(["symbol", "meaning"], [list(i) for i in _items(block)], "glossary"))
        elif block.kind == "figures":
            parts.append("<div class='grid'>" + "\n".join(_html_figure(root, item) for item in _items(block))
                         + "</div>")
        elif block.kind == "details":
            inner = "\n".join(_html_blocks(_children(block), root))
            parts.append(f"<details><summary>{html.escape(block.title)}</summary>{inner}</details>")
    return parts


def render_html(blocks: list[Block], root: Path, title: str) -> str:
    """The report as one self-contained HTML page (figures embedded as data URIs)."""
    head = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>")
    return head + "\n".join(_html_blocks(blocks, root)) + "\n</body></html>\n"


__all__ = ["Block", "fmt", "mean_std", "render_html", "render_markdown", "slug"]
