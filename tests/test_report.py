"""The report: reading order, captions, wide series tables, notation, one sample per class, and a
real headless-browser check (renders, images load, nothing overflows, claims in the first screen)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pudlab.report.browser import check_report, find_browser, problems
from pudlab.report.render import fmt, mean_std
from tests._report_store import small_store
from tests.conftest import make_images


@pytest.fixture(scope="module")
def report_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("report") / "copy"
    shutil.copytree(small_store(tmp_path_factory.getbasetemp() / "shared_store"), root)
    result = subprocess.run([sys.executable, "-m", "pudlab.cli", "report", str(root)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return root


def _headings(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("#")]


def test_report_is_ordered_for_the_reader(report_store):
    markdown = (report_store / "report.md").read_text()
    headings = _headings(markdown)
    order = [next(i for i, h in enumerate(headings) if h.startswith(prefix))
             for prefix in ("# pudlab", "## Claims on", "## Figures", "## Evidence per claim", "## Series",
                            "## Configuration")]
    assert order == sorted(order), headings
    summary = markdown.split("## Claims on")[0]
    assert "Preset quick" in summary and "trainings done" in summary and "wall time" in summary
    claims = markdown.split("## Claims on")[1].split("<details>")[0]
    verdict_rows = re.findall(r"^\| \d \| .* \| (reproduced|not reproduced|inconclusive|not testable here|not evaluated) \| .+ \|$",
                              claims, flags=re.M)
    assert len(verdict_rows) == 9
    assert "Fig. 2: Fig. 2" not in markdown and "SPEC.md" not in markdown
    assert "| D_3,1 |" not in markdown.split("## Series")[0]  # no long-format series before the series section


def test_figure_captions_say_what_is_plotted(report_store):
    markdown = (report_store / "report.md").read_text()
    captions = re.findall(r"^\*(Fig\. [^*]+)\.\* (.+)$", markdown, flags=re.M)
    titles = [title for title, _ in captions]
    assert titles[0].startswith("Fig. 1") and titles[1].startswith("Fig. 2")
    for title, caption in captions[1:]:
        assert "n = 2 repeats" in caption and "+-1 std" in caption, (title, caption)
    fig4 = dict(captions)[next(t for t in titles if t.startswith("Fig. 4a,b"))]
    assert "noise floor" in fig4 and "Delta" in fig4 and "Per-layer" in fig4
    assert "grey area under D_1 is the noise floor" in dict(captions)[titles[1]]
    html = (report_store / "report.html").read_text()
    assert html.count("<figure") == len(captions) == 4 and "class='grid'" in html and "<figure class='wide'>" in html


def test_series_tables_are_wide_with_mean_std_and_n(report_store):
    markdown = (report_store / "report.md").read_text()
    series = markdown.split("## Series")[1]
    header = next(line for line in series.splitlines() if line.startswith("| sigma | D_3,1"))
    assert header.endswith("| n |") and "floor[" in header and "Delta(D_3,1,D_3,2)" in header
    rows = [line for line in series.splitlines() if line.startswith("| 0 |") or line.startswith("| 1 |")]
    assert rows and all(line.endswith("| 2 |") for line in rows[:2])
    assert "±" in series and "Per-layer distances of exp3" in series and "conv1" in series


def test_notation_at_the_top_and_number_format(report_store):
    markdown = (report_store / "report.md").read_text()
    top = markdown.split("## Figures")[0]
    for symbol in ("S-X-Y-Z", "W_r, W_o", "D_k,j", "Delta", "P / U / D", "T_t, T_e"):
        assert symbol in top
    assert fmt(0.91234) == "0.912" and fmt(12345) == "12,345" and mean_std(0.5, 0.0) == "0.500"
    assert mean_std(3.14159, 0.2) == "3.14 ± 0.200" and fmt(float("nan")) == "–"


def test_fig1_preview_is_one_sample_per_class(report_store):
    from pudlab.experiments.store import Store

    labels = make_images(600, (1, 16, 16)).labels  # the npz dataset's labels, indexed by sample id
    with Store(report_store, create=False, read_only=True) as store:
        (images, ids, _seed, _sigmas), = store.previews().values()
    assert len(ids) == 10 and sorted(labels[ids].tolist()) == list(range(10))
    assert images.shape[0] == 10 and not np.allclose(images[0], images[1])


# ---------------------------------------------------------------------------------------- browser
needs_browser = pytest.mark.skipif(find_browser() is None, reason="no headless Chromium installed")


@pytest.mark.browser
@needs_browser
def test_report_in_a_headless_browser(report_store, tmp_path):
    measured = check_report(report_store / "report.html", screenshot=tmp_path / "first_screen.png")
    assert measured["problems"] == [], measured
    assert measured["images"] == 4 and measured["claims_rows_in_first_screen"] >= 5
    assert (tmp_path / "first_screen.png").stat().st_size > 10_000


@pytest.mark.browser
@needs_browser
def test_browser_check_catches_a_broken_page(tmp_path):
    """Negative control: a wide element, a broken image and a claims table far down are all reported."""
    page = tmp_path / "bad.html"
    page.write_text("<!doctype html><html><body><div style='width:3000px'>wide</div>"
                    "<img alt='missing' src='nothing.png'><div style='height:2000px'></div>"
                    "<table class='claims'><tbody><tr><td>1</td></tr></tbody></table></body></html>")
    found = " ".join(check_report(page)["problems"])
    assert "did not load" in found and "wide" in found and "below the first screen" in found


def test_problems_without_a_browser():
    ok = {"viewport": [1280, 700], "scroll_width": 1280, "images": 3, "broken_images": [], "overflowing": [],
          "claims_table": True, "claims_top": 150.0, "claims_rows_in_first_screen": 9}
    assert problems(ok) == []
    assert problems({**ok, "claims_table": False}) == ["no claims table"]
    assert problems({**ok, "images": 0}) == ["no image in the page"]


def test_privacy_and_pud_sections_with_plots(report_store, tmp_path):
    """Stored privacy and PUD results get their sections, plots and every recommendation, in one number format."""
    import json

    root = tmp_path / "with_privacy"
    shutil.copytree(report_store, root)
    (root / "privacy").mkdir()
    shutil.copy(Path(__file__).parent / "data" / "privacy_tiny.json", root / "privacy" / "tiny.json")
    points = [{"sigma": s, "privacy": p, "utility": u, "distinguishability": d, "raw": {}}
              for s, p, u, d in ((0.0, 0.0, 1.0, 1.0), (1.0, 0.8, 0.3, 0.2))]
    recommendations = [{"profile": "outsourcing", "message": "outsourcing: recommended sigma 1"},
                       {"profile": "pol", "message": "pol: recommended sigma 0"}]
    (root / "pud" / "tiny").mkdir(parents=True)
    (root / "pud" / "tiny" / "pud.json").write_text(json.dumps({"points": points, "recommendations": recommendations}))
    result = subprocess.run([sys.executable, "-m", "pudlab.cli", "report", str(root)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    markdown = (root / "report.md").read_text()
    privacy = markdown.split("## Privacy (pudlab privacy)")[1].split("\n## ")[0]
    assert "![Privacy of tiny against sigma](figures/privacy_tiny.png)" in privacy
    assert "(figures/privacy_decline_tiny.png)" in privacy and (root / "figures" / "privacy_tiny.png").exists()
    assert "| 0 | 100 | 1.00 |" in privacy and "| ∞ |" in privacy  # one format; no noise: infinite epsilon
    pud = markdown.split("## PUD triangle (pudlab pud)")[1].split("\n## ")[0]
    assert "outsourcing: recommended sigma 1" in pud and "pol: recommended sigma 0" in pud
    assert "| 1 | 0.800 | 0.300 | 0.200 |" in pud


# ---------------------------------------------------------------------------------------- rendering
@pytest.mark.parametrize(("value", "text"), [
    (-0.91234, "-0.912"), (-1234.5, "-1,234"), (999.4, "999"), (999.6, "1,000"), (99.96, "100"),
    (9.996, "10.0"), (0.9996, "1.00"), (0.0009999, "0.001"), (0.00099949, "1.0e-03"), (-2e-5, "-2.0e-05"), (float("inf"), "∞"), (float("-inf"), "-∞"), (-3, "-3"),
    (1_000_000, "1,000,000"), (False, "no"), ("a|b", "a|b"),
])
def test_fmt_number_format(value, text):
    assert fmt(value) == text


def test_mean_std_drops_a_zero_or_missing_spread():
    assert mean_std(0.91234, 0.01234) == "0.912 ± 0.012"
    assert mean_std(12.345, 0.0) == mean_std(12.345, None) == mean_std(12.345, float("nan")) == "12.3"
    assert mean_std(None, 1.0) == mean_std(float("nan"), 1.0) == "–"


def _blocks(figure: str) -> list:
    from pudlab.report.render import Block

    return [Block("heading", "Results & more", 2),
            Block("text", "a <b> c", css="muted"),
            Block("table", (["name", "value"], [["x|y", 0.91234], ["ok", True], ["n", 54000]])),
            Block("figures", [(figure, "Fig", "caption <1>")]),
            Block("details", [Block("glossary", [("D", "distance")])], title="Notation")]


def test_render_markdown_blocks(tmp_path):
    from pudlab.report.render import render_markdown

    assert render_markdown(_blocks("figures/a.png")).splitlines() == [
        "## Results & more", "", "a <b> c", "", "| name | value |", "|---|---|", "| x\\|y | 0.912 |", "| ok | yes |",
        "| n | 54,000 |", "", "![Fig](figures/a.png)", "", "*Fig.* caption <1>", "", "<details><summary>Notation</summary>",
        "", "| symbol | meaning |", "|---|---|", "| D | distance |", "", "</details>"]


def test_render_html_blocks_escape_and_embed(tmp_path):
    from pudlab.report.render import Block, render_html

    wide = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8 + (300).to_bytes(4, "big") + (100).to_bytes(4, "big")
    (tmp_path / "a.png").write_bytes(wide)
    page = render_html(_blocks("a.png"), tmp_path, "T <1>")
    assert "<title>T &lt;1&gt;</title>" in page and "<h2 id='results-more'>Results &amp; more</h2>" in page
    assert "<p class='muted'>a &lt;b&gt; c</p>" in page
    assert "<td class='num'>0.912</td>" in page and "<td>x|y</td>" in page and "<td class='num'>54,000</td>" in page
    assert "<figure class='wide'>" in page and "<b>Fig.</b> caption &lt;1&gt;" in page  # 3:1 > WIDE_ASPECT
    assert "<details><summary>Notation</summary><div class='scroll'><table class='glossary'>" in page
    with pytest.raises(TypeError, match="a table block holds \\(header, rows\\), got str"):
        render_html([Block("table", "oops")], tmp_path, "T")
