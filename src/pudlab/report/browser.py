"""Check a report in a real headless browser (Chromium), at a desktop and at a phone width: it renders,
every image loads, nothing overflows the page width (no element, no unbroken text), no figure has to be
panned sideways, every figure's legend text is at least 8 pt at the size it is shown, the claims table
is readable (no sideways scrolling, no column squeezed to a few characters per line) and visible in the
first screen.

Chromium's window cannot be narrower than 500 px, so the report is loaded in a frame of exactly the
checked size inside a larger window: the frame is the viewport the report sees (its media queries,
its width). A small script copied into the page measures the layout once everything has loaded and
posts the result to the outer page, which Chromium's ``--dump-dom`` prints. Screenshots are cropped to
the frame. Command line: ``python -m pudlab.report.browser STORE/report.html [--screenshots DIR]``.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pudlab.errors import PudlabError
from pudlab.report.render import MIN_LEGEND_PT

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
FIRST_SCREEN = (1280, 800)
"""Width x height of the desktop 'first screen': a common laptop viewport."""
PHONE_SCREEN = (390, 844)
"""Width x height of a phone's screen in CSS pixels (a common 6.1-inch phone)."""
SIZES = (FIRST_SCREEN, PHONE_SCREEN)
"""The viewports ``main`` checks."""
MIN_CHARACTERS_PER_LINE = 16
"""A claims-table cell of four or more words must hold at least this many characters per line."""

_PROBE = """<script>
window.addEventListener('load', function () {
  var vw = document.documentElement.clientWidth, vh = window.innerHeight;
  function shown(e) { return e.getClientRects().length > 0; }
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !i.complete || i.naturalWidth === 0; })
                     .map(function (i) { return i.alt; });
  var overflow = [];
  document.querySelectorAll('body *').forEach(function (e) {
    var r = e.getBoundingClientRect();
    if (r.width === 0 || e.closest('.scroll') || e.closest('.pan')) return;
    if (r.right > vw + 1) overflow.push(e.tagName + ' ' + (e.className || ''));
    else if (e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0 && getComputedStyle(e).overflowX === 'visible')
      overflow.push(e.tagName + ' ' + (e.className || '') + ' (text spills out: "' + e.textContent.trim().slice(0, 40) + '")');
  });
  var scrolled = Array.prototype.filter.call(document.querySelectorAll('.scroll'),
      function (e) { return e.scrollWidth > e.clientWidth + 1; }).length;
  var panned = Array.prototype.filter.call(document.querySelectorAll('.pan'), function (e) {
      return shown(e) && e.scrollWidth > e.clientWidth + 1; })
    .map(function (e) { var i = e.querySelector('img'); return i ? i.alt : e.className; });
  var legends = images.filter(function (i) { return shown(i) && i.dataset.legendPt && i.naturalWidth > 0; })
    .map(function (i) {
      var scale = i.getBoundingClientRect().width / i.naturalWidth;
      return {figure: i.alt, variant: i.className || 'only', legend_pt: parseFloat(i.dataset.legendPt),
              displayed_pt: Math.round(parseFloat(i.dataset.legendPt) * parseFloat(i.dataset.dpi) / 96 * scale * 100) / 100,
              width: Math.round(i.getBoundingClientRect().width), natural_width: i.naturalWidth};
    });
  var claims = document.querySelector('table.claims'), rows = [], cells = [], claimsScroll = false;
  if (claims) {
    rows = Array.prototype.map.call(claims.querySelectorAll('tbody tr'), function (tr) {
      var r = tr.getBoundingClientRect(); return [r.top, r.bottom]; });
    var box = claims.closest('.scroll');
    claimsScroll = box ? box.scrollWidth > box.clientWidth + 1 : claims.getBoundingClientRect().right > vw + 1;
    claims.querySelectorAll('tbody td').forEach(function (td) {
      var text = td.textContent.trim();
      if (text.split(/\\s+/).length < 4) return;
      var range = document.createRange(); range.selectNodeContents(td);
      var tops = {};
      Array.prototype.forEach.call(range.getClientRects(), function (r) { if (r.width > 0) tops[Math.round(r.top)] = 1; });
      var lines = Math.max(1, Object.keys(tops).length);
      cells.push({text: text.slice(0, 40), width: Math.round(td.getBoundingClientRect().width),
                  characters_per_line: Math.round(text.length / lines)});
    });
  }
  var top = claims ? claims.getBoundingClientRect().top : null;
  var narrowest = cells.reduce(function (a, c) { return a && a.characters_per_line <= c.characters_per_line ? a : c; }, null);
  var result = {viewport: [vw, vh], scroll_width: document.documentElement.scrollWidth,
    images: images.length, images_shown: images.filter(shown).length, broken_images: broken,
    overflowing: overflow.slice(0, 20), scrolled_tables: scrolled, panned_figures: panned, legends: legends,
    claims_table: !!claims, claims_top: top, claims_rows: rows.length, claims_scrolls: claimsScroll,
    claims_narrowest_cell: narrowest,
    claims_rows_in_first_screen: rows.filter(function (r) { return r[1] <= vh; }).length,
    headings: Array.prototype.map.call(document.querySelectorAll('h1,h2'), function (h) { return h.textContent; })};
  var text = JSON.stringify(result);
  var out = document.createElement('pre'); out.id = 'pudlab-check'; out.textContent = text;
  document.body.appendChild(out);
  if (window.parent !== window) window.parent.postMessage(text, '*');
});
</script>"""

_FRAME = """<!doctype html><html><head><meta charset='utf-8'></head><body style='margin:0'>
<iframe src='{src}' style='border:0;display:block;width:{width}px;height:{height}px'></iframe>
<script>window.addEventListener('message', function (event) {{
  var out = document.createElement('pre'); out.id = 'pudlab-check'; out.textContent = event.data;
  document.body.appendChild(out); }});</script></body></html>"""


def find_browser() -> str | None:
    """The path of a Chromium-family browser on PATH (``$PUDLAB_CHROMIUM`` first), or None."""
    wanted = os.environ.get("PUDLAB_CHROMIUM")
    if wanted:
        return shutil.which(wanted) or (wanted if Path(wanted).exists() else None)
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(browser: str, args: list[str], timeout: float) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="pudlab-chromium-")
    try:
        command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                   "--hide-scrollbars", "--allow-file-access-from-files", f"--user-data-dir={profile}",
                   "--virtual-time-budget=10000", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _crop(png: Path, size: tuple[int, int]) -> None:
    """Cut a screenshot down to the frame at its top left corner (``size``), in place."""
    from PIL import Image

    with Image.open(png) as image:
        cropped = image.crop((0, 0, min(size[0], image.width), min(size[1], image.height)))
    cropped.save(png)


def check_report(path: str | os.PathLike, *, screenshot: str | os.PathLike | None = None,
                 size: tuple[int, int] = FIRST_SCREEN, browser: str | None = None, timeout: float = 120) -> dict:
    """Load ``path`` in headless Chromium in a viewport of ``size``; return the layout measurements (see
    the module doc), with ``problems``: what failed (empty when the page passes every check)."""
    browser = browser or find_browser()
    if browser is None:
        raise PudlabError("no Chromium found: install it (Debian: apt-get install chromium) or set PUDLAB_CHROMIUM")
    page = Path(path).resolve()
    text = page.read_text(encoding="utf-8")
    if "</body>" not in text:
        raise PudlabError(f"{page}: not an HTML page with a <body>")
    window = f"--window-size={max(size[0], 500) + 40},{size[1] + 120}"
    with tempfile.TemporaryDirectory(prefix="pudlab-check-") as temp:
        probe, frame = Path(temp) / page.name, Path(temp) / "frame.html"
        probe.write_text(text.replace("</body>", _PROBE + "</body>", 1), encoding="utf-8")
        frame.write_text(_FRAME.format(src=html.escape(probe.as_uri()), width=size[0], height=size[1]), encoding="utf-8")
        result = _run(browser, [window, "--dump-dom", frame.as_uri()], timeout)
        match = re.search(r"<pre id=\"pudlab-check\">(.*?)</pre>", result.stdout, flags=re.S)
        if match is None:
            raise PudlabError(f"{page}: the browser did not render the page (exit {result.returncode}): "
                              f"{result.stderr.strip().splitlines()[-1:] or ''}")
        measured = json.loads(html.unescape(match.group(1)))
        if screenshot is not None:
            target = Path(screenshot).resolve()
            frame.write_text(_FRAME.format(src=html.escape(page.as_uri()), width=size[0], height=size[1]),
                             encoding="utf-8")
            shot = _run(browser, [window, f"--screenshot={target}", frame.as_uri()], timeout)
            if not target.exists():
                raise PudlabError(f"{page}: no screenshot written (exit {shot.returncode})")
            _crop(target, size)
            measured["screenshot"] = str(target)
    measured["problems"] = problems(measured)
    return measured


def problems(measured: dict) -> list[str]:
    """What a measured page fails: broken images, overflow, panned figures, small legends, an unreadable
    claims table or one below the first screen."""
    found = []
    width = measured["viewport"][0]
    if measured["images"] == 0:
        found.append("no image in the page")
    if measured["broken_images"]:
        found.append(f"images that did not load: {measured['broken_images']}")
    if measured["scroll_width"] > width + 1:
        found.append(f"page is {measured['scroll_width']} px wide in a {width} px window")
    if measured["overflowing"]:
        found.append(f"elements wider than the window: {measured['overflowing']}")
    if measured.get("panned_figures"):
        found.append(f"figures wider than their place at {width} px (panned sideways): {measured['panned_figures']}")
    for legend in measured.get("legends", []):
        if legend["displayed_pt"] < MIN_LEGEND_PT - 0.05:
            found.append(f"figure '{legend['figure']}' ({legend['variant']}): legend text {legend['displayed_pt']:.1f} pt "
                         f"at its displayed width {legend['width']} px (below {MIN_LEGEND_PT:g} pt)")
    if not measured["claims_table"]:
        found.append("no claims table")
        return found
    if measured.get("claims_scrolls"):
        found.append(f"the claims table scrolls sideways at {width} px")
    narrowest = measured.get("claims_narrowest_cell")
    if narrowest and narrowest["characters_per_line"] < MIN_CHARACTERS_PER_LINE:
        found.append(f"claims table unreadable at {width} px: '{narrowest['text']}...' gets "
                     f"{narrowest['characters_per_line']} characters per line in {narrowest['width']} px "
                     f"(at least {MIN_CHARACTERS_PER_LINE} wanted)")
    if measured["claims_rows_in_first_screen"] < 1:
        found.append(f"the claims table starts at {measured['claims_top']:.0f} px, below the first screen "
                     f"({measured['viewport'][1]} px)")
    return found


def check_sizes(path: str | os.PathLike, *, sizes: tuple[tuple[int, int], ...] = SIZES,
                screenshots: str | os.PathLike | None = None, browser: str | None = None) -> dict[str, dict]:
    """:func:`check_report` at every size: ``{"1280x800": measured, ...}``; with ``screenshots`` (a folder),
    the first screen of each as ``first_screen_<width>.png`` there."""
    results = {}
    for size in sizes:
        shot = Path(screenshots) / f"first_screen_{size[0]}.png" if screenshots is not None else None
        if shot is not None:
            shot.parent.mkdir(parents=True, exist_ok=True)
        results[f"{size[0]}x{size[1]}"] = check_report(path, screenshot=shot, size=size, browser=browser)
    return results


def main(argv: list[str] | None = None) -> int:
    """Check a report at a desktop and a phone width; print the measurements as JSON; exit 1 when a check fails."""
    parser = argparse.ArgumentParser(prog="python -m pudlab.report.browser", description=__doc__.split("\n")[0])
    parser.add_argument("html")
    parser.add_argument("--screenshots", default=None, metavar="DIR",
                        help="Also write the first screen at each width as DIR/first_screen_<width>.png.")
    args = parser.parse_args(argv)
    try:
        results = check_sizes(args.html, screenshots=args.screenshots)
    except PudlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(results, indent=2))
    failed = {name: result["problems"] for name, result in results.items() if result["problems"]}
    for name, found in failed.items():
        print(f"FAIL at {name}: " + "; ".join(found), file=sys.stderr)
    if not failed:
        print(f"ok at {', '.join(results)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
