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

from pudlab.report.browser import check_report, check_sizes, find_browser, problems
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
    verdict_rows = re.findall(r"^\| \d \| .* \| (reproduced|not reproduced|inconclusive|not evaluated) \| .+ \|$",
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
def test_report_in_a_headless_browser_at_desktop_and_phone_width(report_store, tmp_path):
    """At 1280 x 800 and 390 x 844: nothing overflows, no figure pans, every legend is >= 8 pt as shown,
    the claims table is readable and starts in the first screen; the screenshots have the checked size."""
    from PIL import Image

    results = check_sizes(report_store / "report.html", screenshots=tmp_path)
    for name, measured in results.items():
        assert measured["problems"] == [], (name, measured)
        assert measured["images_shown"] == 4 and measured["claims_rows_in_first_screen"] >= 1, (name, measured)
        assert measured["viewport"][0] == int(name.split("x")[0]) and measured["scroll_width"] <= measured["viewport"][0]
        assert len(measured["legends"]) == 3 and min(item["displayed_pt"] for item in measured["legends"]) >= 8
        assert measured["claims_narrowest_cell"]["characters_per_line"] >= 16
    desktop, phone = results["1280x800"], results["390x844"]
    assert desktop["claims_rows_in_first_screen"] >= 5
    assert {item["variant"] for item in desktop["legends"]} == {"desk"}  # the wide figures on a desktop ...
    assert {item["variant"] for item in phone["legends"]} == {"phone"}  # ... the stacked ones on a phone
    for width, height in ((1280, 800), (390, 844)):
        with Image.open(tmp_path / f"first_screen_{width}.png") as shot:
            assert shot.size == (width, height)


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


def _one_pixel() -> str:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1), "white").save(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.browser
@needs_browser
def test_browser_check_names_unbroken_text_that_spills_out(tmp_path):
    """Negative control: a long store path in a paragraph fits no phone line; its box stays inside the
    window, the text does not, and the check names it. The report's CSS breaks such words."""
    from pudlab.report.render import CSS

    path = "/tmp/test_privacy_and_pud_sections_of_a_store_with_a_long_name_0/copy"  # no break inside a word
    body = (f"<p>from the store {path}; every number</p><img alt='x' src='{_one_pixel()}'>"
            "<table class='claims'><tbody><tr><td>1</td></tr></tbody></table>")
    page = tmp_path / "path.html"
    page.write_text(f"<!doctype html><html><body style='margin:0'>{body}</body></html>")
    found = " ".join(check_report(page, size=(390, 844))["problems"])
    assert "page is" in found and 'P  (text spills out: "from the store /tmp/test_privacy' in found, found
    page.write_text(f"<!doctype html><html><head><style>{CSS}</style></head><body>{body}</body></html>")
    assert check_report(page, size=(390, 844))["problems"] == []


@pytest.mark.browser
@needs_browser
def test_browser_check_catches_the_old_phone_layout_and_small_legends(tmp_path):
    """Negative control at 390 px: the grid of 470 px minimum columns overflows, a six-column claims
    table squeezes its claim to a few characters per line, and a legend drawn at 7 pt shown at its
    natural size is 8.75 pt but shown at half its size is below 8 pt."""
    from pudlab.report.render import DPI_KEY, LEGEND_KEY

    def png(legend_pt: float) -> str:
        import base64
        import io

        from PIL import Image, PngImagePlugin

        info = PngImagePlugin.PngInfo()
        info.add_text(LEGEND_KEY, f"{legend_pt:g}")
        info.add_text(DPI_KEY, "120")
        buffer = io.BytesIO()
        Image.new("RGB", (800, 400), "white").save(buffer, format="png", pnginfo=info)
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()

    claim = "Accuracy falls as sigma rises, and the gaps between the series vanish as sigma grows"
    page = tmp_path / "old.html"
    page.write_text(
        "<!doctype html><html><head><meta name='viewport' content='width=device-width'></head><body>"
        "<table class='claims'><tbody><tr><td>1</td>" + f"<td>{claim}</td>" * 5 + "</tr></tbody></table>"
        "<div style='display:grid;grid-template-columns:repeat(auto-fill,minmax(470px,1fr))'>"
        f"<figure><img alt='small' style='width:400px' data-legend-pt='7' data-dpi='120' src='{png(7)}'></figure>"
        "</div></body></html>")
    measured = check_report(page, size=(390, 844))
    found = " ".join(measured["problems"])
    assert measured["viewport"][0] == 390, measured  # the frame, not Chromium's 500 px minimum window
    assert "wider than the window" in found and "claims table unreadable at 390 px" in found, measured
    assert "figure 'small' (only): legend text 4.4 pt" in found


def test_problems_without_a_browser():
    ok = {"viewport": [1280, 700], "scroll_width": 1280, "images": 3, "broken_images": [], "overflowing": [],
          "claims_table": True, "claims_top": 150.0, "claims_rows_in_first_screen": 9, "panned_figures": [],
          "legends": [{"figure": "F", "variant": "desk", "displayed_pt": 9.1, "width": 500}],
          "claims_scrolls": False, "claims_narrowest_cell": {"text": "a b c d", "width": 300, "characters_per_line": 40}}
    assert problems(ok) == []
    assert problems({**ok, "claims_table": False}) == ["no claims table"]
    assert problems({**ok, "images": 0}) == ["no image in the page"]
    assert problems({**ok, "panned_figures": ["F"]}) == ["figures wider than their place at 1280 px (panned sideways): ['F']"]
    small = [{"figure": "F", "variant": "phone", "displayed_pt": 6.2, "width": 300}]
    assert problems({**ok, "legends": small}) == [
        "figure 'F' (phone): legend text 6.2 pt at its displayed width 300 px (below 8 pt)"]
    squeezed = {"text": "Accuracy falls as", "width": 66, "characters_per_line": 5}
    assert "5 characters per line in 66 px" in problems({**ok, "claims_narrowest_cell": squeezed})[0]
    assert problems({**ok, "claims_scrolls": True}) == ["the claims table scrolls sideways at 1280 px"]


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
    from pudlab.pud.scores import PudPoint
    from pudlab.report.privacy_figures import save_pud_figures

    save_pud_figures([PudPoint.from_dict(point, where="test") for point in points], root / "pud" / "tiny",
                     title="PUD: tiny", highlight=1.0)
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
    assert "(pud/tiny/pud_curves.png)" in pud and ".narrow.png" not in markdown  # narrow variants: HTML only
    if find_browser() is not None:  # the privacy and PUD figures read on a phone as well
        for name, measured in check_sizes(root / "report.html").items():
            assert measured["problems"] == [] and len(measured["legends"]) == 6, (name, measured)


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


# ---------------------------------------------------------------------------------------- figures
def _table(kind: str, name: str, means, stds) -> dict:
    return {name: {"kind": kind, "x": [0.0, 0.5, 1.0], "mean": list(means), "std": list(stds), "n": [3, 3, 3]}}


def _plan(dataset: str, title: str) -> dict:
    return {"dataset": dataset, "spec": {"title": title, "models": {"Wr21": {"label": "W_r,2,1"}}}}


def test_panels_carry_the_papers_letters():
    """Fig. 3c,d's panels are (c) and (d), not (a) and (b); a figure without letters gets none."""
    from pudlab.report.experiment_figures import _draw_panels, panel_letters
    from pudlab.report.figures import plt

    table = _table("accuracy", "A(W_2,1)", [0.9, 0.8, 0.7], [0.01, 0.02, 0.03])
    figure = _draw_panels("exp2", [_plan("mnist", "Exp-2"), _plan("cifar", "Exp-2")], [table, table], [], False)
    assert [axis.get_title() for axis in figure.axes] == ["(c) mnist", "(d) cifar"]
    plt.close(figure)
    assert panel_letters("Fig. 5", 1) == [""] and panel_letters("Fig. 4c,d", 1) == ["(c) "]


def test_bands_of_non_negative_series_stay_at_or_above_zero():
    """Delta = |...| and distances cannot be negative: their +-1 std band is cut at 0 (accuracy at [0, 1])."""
    from pudlab.report.experiment_figures import _draw_panels
    from pudlab.report.figures import plt

    table = {**_table("distance", "D_3,1", [0.5, 1.0, 1.5], [0.1, 0.1, 0.1]),
             **_table("delta", "Delta(D_3,1,D_3,2)", [0.1, 0.05, 0.2], [0.3, 0.3, 0.3])}
    figure = _draw_panels("exp3", [_plan("mnist", "Exp-3")], [table], ["delta"], False)
    delta_axis = figure.axes[1]
    bands = [collection for collection in delta_axis.collections if collection.get_paths()]
    assert bands and min(path.vertices[:, 1].min() for band in bands for path in band.get_paths()) >= 0.0
    plt.close(figure)
    accuracy = _table("accuracy", "A(W_1,1)", [0.95, 0.9, 0.5], [0.1, 0.1, 0.1])
    figure = _draw_panels("exp1", [_plan("mnist", "Exp-1")], [accuracy], [], False)
    vertices = [path.vertices[:, 1] for band in figure.axes[0].collections for path in band.get_paths()]
    assert max(v.max() for v in vertices) <= 1.0 and min(v.min() for v in vertices) >= 0.0
    plt.close(figure)


def test_figure_files_record_legend_size_and_fit_a_phone(report_store):
    """Image level: each drawn figure's PNG records its legend size; at the report's sizes (a 2-column
    grid cell or a full row at 1280 px, a 356 px column at 390 px) every legend is >= 8 pt."""
    from PIL import Image

    from pudlab.report.render import DPI_KEY, LEGEND_KEY, png_text

    figures = report_store / "figures"
    drawn = sorted(path for path in figures.glob("*.png") if not path.name.endswith(".narrow.png"))
    with_legend = [path for path in drawn if LEGEND_KEY in png_text(path.read_bytes())]
    assert len(with_legend) == 3  # Fig. 2, 3a,b, 4a,b (Fig. 1 has no legend)
    for path in with_legend:
        narrow = figures / f"{path.stem}.narrow.png"
        for png, shown_width in ((path, 1150), (narrow, 356)):
            text = png_text(png.read_bytes())
            with Image.open(png) as image:
                scale = min(1.0, shown_width / image.width)
            shown_pt = float(text[LEGEND_KEY]) * float(text[DPI_KEY]) / 96 * scale  # pt -> image px -> CSS px -> pt
            assert float(text[LEGEND_KEY]) >= 10 and shown_pt >= 8, (png.name, scale, shown_pt)
    with Image.open(figures / "fig1_samples_tiny.narrow.png") as fig1:  # a column per sigma: fits a phone
        assert fig1.width <= 450 and fig1.height > fig1.width


def _coincident_decline_report():
    """Privacy decline where sigma 0.1 and 0.5 re-identify every sample and keyed equals disjoint."""
    import copy
    import json
    import math

    from pudlab.privacy.report import PrivacyReport

    data = json.loads((Path(__file__).parent / "data" / "privacy_tiny.json").read_text())
    entries = []
    for sigma, psnr in ((0.1, 20.0), (0.5, 6.0)):
        entry = copy.deepcopy(data["sigmas"][1])
        entry["sigma"] = sigma
        for scheme, rows in entry["decline"].items():
            for row in rows:
                row["reidentified_fraction"] = 1.0
                row["psnr"] = psnr + (10 * math.log10(row["n"]) if scheme == "fresh" else 0.0)
        entries.append(entry)
    return PrivacyReport.from_dict({**data, "sigmas": entries}, where="test")


@pytest.mark.parametrize("narrow", [False, True])
def test_privacy_decline_lines_stay_visible(narrow):
    """Image level: in every panel each sigma's colour shows (no line hidden under another), and keyed
    and disjoint disclosures have panels of their own."""
    from matplotlib.colors import to_rgb

    from pudlab.report.figures import plt
    from pudlab.report.privacy_figures import decline_figure

    figure = decline_figure(_coincident_decline_report(), narrow)
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[:, :, :3].astype(int)
    height = pixels.shape[0]
    titles = [axis.get_title() for axis in figure.axes]
    assert any("keyed" in t for t in titles) and any("disjoint" in t for t in titles)
    assert not any("keyed" in t and "disjoint" in t for t in titles)
    for axis in figure.axes:
        lines = [line for line in axis.get_lines() if line.get_label().startswith("σ=")]
        assert len(lines) == 2, axis.get_title()
        box = axis.get_window_extent()
        inside = pixels[int(height - box.y1):int(height - box.y0), int(box.x0):int(box.x1)]
        for line in lines:
            colour = np.array(to_rgb(line.get_color())) * 255
            seen = int((np.abs(inside - colour).sum(axis=2) < 30).sum())
            assert seen > 30, (axis.get_title(), line.get_label(), seen)
    plt.close(figure)


def test_fl_accuracy_rounds_are_whole_numbers(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from pudlab.report import fl_figures

    drawn = []
    monkeypatch.setattr(fl_figures, "save_figure", lambda figure, path: drawn.append(figure) or path)
    records = [SimpleNamespace(round=r, accuracy=0.1 + 0.2 * r) for r in range(4)]
    fl_figures.accuracy_figure({"none": records, "pol": records}, tmp_path / "fl_accuracy", title="t")
    figure = drawn[0]
    figure.canvas.draw()
    ticks = [tick for tick in figure.axes[0].get_xticks() if 0 <= tick <= 3]
    assert ticks and all(float(tick).is_integer() for tick in ticks), ticks


# ---------------------------------------------------------------------------------------- how sure
def test_intervals_and_symbols_are_explained(report_store):
    markdown = (report_store / "report.md").read_text()
    top = markdown.split("## Figures")[0]
    note = next(line for line in top.splitlines() if line.startswith("How sure:"))
    assert "95 % confidence interval" in note and "[a, b]" in note
    notation = top.split("<details><summary>Notation")[1]
    for symbol in ("| [a, b] |", "| margin |", "| sigma* |", "| rho |", "| W_r,3,1, Wr31 |", "| batch_size 0 |"):
        assert symbol in notation, symbol
    assert "| batch_size | 32 |" in markdown.split("## Configuration")[1]  # this store's preset sets it


def test_default_settings_say_what_they_stand_for():
    from pudlab.report.sections import _setting

    assert _setting("batch_size", 0) == "0 (the paper's: 128 for one-channel images, 64 for colour)"
    assert _setting("batch_size", 64) == 64 and _setting("max_train_size", 0) == "0 (no cut: the whole T_t)"
    assert _setting("widths", [8, 16, 32]) == "[8, 16, 32]" and _setting("disjoint", False) is False


def test_a_zero_spread_over_repeats_is_shown():
    from pudlab.report.sections import wide_series

    table = {"A(W_1,3)": {"x": [0.2, 0.3], "mean": [0.454, 0.46], "std": [0.0, 0.0], "n": [3, 1]}}
    assert wide_series(table)[1] == [["0.2", "0.454 ± 0", "3"], ["0.3", "0.460", "1"]]
