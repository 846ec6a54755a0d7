"""The README's library example runs as written and prints labelled numbers."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_library_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "README has no python example"
    result = subprocess.run([sys.executable, "-c", blocks[0]], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    match = re.search(r"A\(W_o\) = (\d\.\d+), D\(W_r, W_o\) = (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    accuracy, distance = map(float, match.groups())
    assert 0.2 < accuracy <= 1.0 and distance > 0.0
