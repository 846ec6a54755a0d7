"""The report of a result store: ``report.md`` and a self-contained ``report.html``.

Ordered for the reader: a summary (what was run, on what data, how long, the claims table with a
verdict and one line of evidence each), the figures in a grid with captions, the evidence per
claim, the series as wide tables, Privacy and PUD when measured, then the configuration (folded),
environment and timings. The notation is at the top. Both documents are rendered from one list of
blocks (``pudlab.report.render``); every number comes from the store.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pudlab import __version__
from pudlab.experiments.claims import CLAIMS, claims_by_dataset
from pudlab.experiments.store import Store
from pudlab.io import write_bytes_atomic
from pudlab.report.applications import privacy_blocks, pud_blocks
from pudlab.report.experiment_figures import FIGURES, FigureFile, draw_figure_files, draw_figures
from pudlab.report.glossary import CLAIMS_NOTE, GLOSSARY
from pudlab.report.render import Block, render_html, render_markdown
from pudlab.report.sections import (
    configuration_blocks,
    evidence_blocks,
    series_blocks,
    summary_blocks,
)

TITLE = "pudlab reproduction report"


def build_blocks(store: Store, figures: list[FigureFile], base: Path | None = None) -> list[Block]:
    """The report's content, in reading order; figure paths relative to ``base`` (the report's
    folder, default the store)."""
    base = base or store.root
    claims = claims_by_dataset(store)
    blocks = [Block("heading", TITLE, 1),
              *summary_blocks(store, claims),
              Block("text", CLAIMS_NOTE, css="note"),
              Block("details", [Block("glossary", GLOSSARY),
                                Block("text", "The full notation, the six setups and the paper reference are in "
                                              "docs/notation.md of the pudlab repository.")],
                    title="Notation (T_t, T_e, S-X-Y-Z, sigma, W_r, W_o, D, D_k,j, Delta, [a, b], margin, sigma*, "
                          "rho, P/U/D)")]
    if figures:
        blocks.append(Block("heading", "Figures"))
        blocks.append(Block("figures", [(os.path.relpath(item.png, base), item.title, item.caption,
                                         os.path.relpath(item.narrow, base) if item.narrow else None)
                                        for item in figures]))
    blocks += evidence_blocks(claims)
    blocks += series_blocks(store)
    blocks += privacy_blocks(store, base / "figures", base)
    blocks += pud_blocks(store, base)
    blocks += configuration_blocks(store)
    blocks.append(Block("text", f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by pudlab {__version__} from the "
                                f"store {store.root}; every number and figure above comes from that store.",
                        css="muted"))
    return blocks


def write_report(store: Store, out: str | os.PathLike | None = None) -> dict:
    """Draw the figures, then write ``report.md`` and ``report.html`` into ``out`` (default: the
    store; figures in ``out/figures``). The store itself is only read."""
    base = Path(out) if out is not None else store.root
    figures = draw_figure_files(store, base / "figures")
    blocks = build_blocks(store, figures, base)
    markdown_path, html_path = base / "report.md", base / "report.html"
    write_bytes_atomic(markdown_path, render_markdown(blocks).encode())
    write_bytes_atomic(html_path, render_html(blocks, base, TITLE).encode())
    files: list[Path] = [path for item in figures for path in (item.png, item.svg, item.narrow) if path is not None]
    return {"markdown": markdown_path, "html": html_path, "figures": files, "claims": len(CLAIMS)}


__all__ = ["FIGURES", "build_blocks", "claims_by_dataset", "draw_figures", "write_report"]
