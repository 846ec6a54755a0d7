"""Check a report in a real headless browser (Chromium): it renders, every image loads, nothing
overflows the page width, and the claims table is visible in the first screen.

The page is copied with a small script that measures the layout once everything has loaded and
writes the result into the DOM; Chromium's ``--dump-dom`` prints it. Also takes a screenshot.
Command line: ``python -m pudlab.report.browser STORE/report.html [--screenshot FILE.png]``.
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

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")
FIRST_SCREEN = (1280, 800)
"""Width x height of the 'first screen': a common laptop viewport."""

_PROBE = """<script>
window.addEventListener('load', function () {
  var vw = document.documentElement.clientWidth, vh = window.innerHeight;
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !i.complete || i.naturalWidth === 0; })
                     .map(function (i) { return i.alt; });
  var overflow = [];
  document.querySelectorAll('body *').forEach(function (e) {
    var r = e.getBoundingClientRect();
    if (r.width > 0 && r.right > vw + 1 && !e.closest('.scroll')) overflow.push(e.tagName + ' ' + (e.className || ''));
  });
  var scrolled = Array.prototype.filter.call(document.querySelectorAll('.scroll'),
      function (e) { return e.scrollWidth > e.clientWidth + 1; }).length;
  var claims = document.querySelector('table.claims'), rows = [];
  if (claims) { rows = Array.prototype.map.call(claims.querySelectorAll('tbody tr'), function (tr) {
      var r = tr.getBoundingClientRect(); return [r.top, r.bottom]; }); }
  var top = claims ? claims.getBoundingClientRect().top : null;
  var result = {viewport: [vw, vh], scroll_width: document.documentElement.scrollWidth,
    images: images.length, broken_images: broken, overflowing: overflow.slice(0, 20), scrolled_tables: scrolled,
    claims_table: !!claims, claims_top: top, claims_rows: rows.length,
    claims_rows_in_first_screen: rows.filter(function (r) { return r[1] <= vh; }).length,
    headings: Array.prototype.map.call(document.querySelectorAll('h1,h2'), function (h) { return h.textContent; })};
  var out = document.createElement('pre'); out.id = 'pudlab-check';
  out.textContent = JSON.stringify(result); document.body.appendChild(out);
});
</script>"""


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
                   "--hide-scrollbars", f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def check_report(path: str | os.PathLike, *, screenshot: str | os.PathLike | None = None,
                 size: tuple[int, int] = FIRST_SCREEN, browser: str | None = None, timeout: float = 120) -> dict:
    """Load ``path`` in headless Chromium at ``size``; return the layout measurements (see module doc).

    Adds ``problems``: a list of what failed (empty when the page passes every check).
    """
    browser = browser or find_browser()
    if browser is None:
        raise PudlabError("no Chromium found: install it (Debian: apt-get install chromium) or set PUDLAB_CHROMIUM")
    page = Path(path).resolve()
    text = page.read_text(encoding="utf-8")
    if "</body>" not in text:
        raise PudlabError(f"{page}: not an HTML page with a <body>")
    window = f"--window-size={size[0]},{size[1]}"
    with tempfile.TemporaryDirectory(prefix="pudlab-check-") as temp:
        probe = Path(temp) / page.name
        probe.write_text(text.replace("</body>", _PROBE + "</body>", 1), encoding="utf-8")
        result = _run(browser, [window, "--dump-dom", probe.as_uri()], timeout)
    match = re.search(r"<pre id=\"pudlab-check\">(.*?)</pre>", result.stdout, flags=re.S)
    if match is None:
        raise PudlabError(f"{page}: the browser did not render the page (exit {result.returncode}): "
                          f"{result.stderr.strip().splitlines()[-1:] or ''}")
    measured = json.loads(html.unescape(match.group(1)))
    if screenshot is not None:
        target = Path(screenshot).resolve()
        shot = _run(browser, [window, f"--screenshot={target}", page.as_uri()], timeout)
        if not target.exists():
            raise PudlabError(f"{page}: no screenshot written (exit {shot.returncode})")
        measured["screenshot"] = str(target)
    measured["problems"] = problems(measured)
    return measured


def problems(measured: dict) -> list[str]:
    """What a measured page fails: broken images, overflow, claims table not in the first screen."""
    found = []
    if measured["images"] == 0:
        found.append("no image in the page")
    if measured["broken_images"]:
        found.append(f"images that did not load: {measured['broken_images']}")
    if measured["scroll_width"] > measured["viewport"][0] + 1:
        found.append(f"page is {measured['scroll_width']} px wide in a {measured['viewport'][0]} px window")
    if measured["overflowing"]:
        found.append(f"elements wider than the window: {measured['overflowing']}")
    if not measured["claims_table"]:
        found.append("no claims table")
    elif measured["claims_rows_in_first_screen"] < 1:
        found.append(f"the claims table starts at {measured['claims_top']:.0f} px, below the first screen "
                     f"({measured['viewport'][1]} px)")
    return found


def main(argv: list[str] | None = None) -> int:
    """Check a report; print the measurements as JSON; exit 1 when a check fails."""
    parser = argparse.ArgumentParser(prog="python -m pudlab.report.browser", description=__doc__.split("\n")[0])
    parser.add_argument("html")
    parser.add_argument("--screenshot", default=None, help="Also write a PNG of the first screen here.")
    args = parser.parse_args(argv)
    measured = check_report(args.html, screenshot=args.screenshot)
    print(json.dumps(measured, indent=2))
    return 1 if measured["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
