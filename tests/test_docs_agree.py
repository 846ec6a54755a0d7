"""The README says what the code does (issue 25): the quick preset, the time `pud` announces, the dataset
formats pudlab reads, the Ray cluster recipe."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_readme_states_the_quick_preset_as_shipped():
    from pudlab.experiments.spec import load_preset

    quick = load_preset("quick")
    stated = re.search(r"`quick` \(mnist-5k, (\d+) epochs, lr ([\d.e-]+), widths ([\d/]+), dense (\d+), (\d+) sigmas, "
                       r"(\d+) repeats", _flat(README))
    assert stated, "README does not describe the quick preset"
    epochs, lr, widths, hidden, sigmas, repeats = stated.groups()
    assert (int(epochs), float(lr), widths, int(hidden), int(sigmas), int(repeats)) == (
        quick.epochs, quick.lr, "/".join(map(str, quick.widths)), quick.hidden, len(quick.sigmas), quick.repeats)
    assert not re.search(r"quick[^.]{0,80}\b(8 epochs|5 sigmas)", _flat(README))
    assert f"a {len(quick.sigmas)}-point sigma grid" in _flat(README)


def test_readme_states_the_time_pud_announces():
    from pudlab.cli.privacy import PRIVACY_SECONDS_PER_SIGMA
    from pudlab.experiments.spec import load_preset

    minutes = PRIVACY_SECONDS_PER_SIGMA * len(load_preset("quick").sigmas) / 60
    assert f"about {PRIVACY_SECONDS_PER_SIGMA / 60:.0f} minutes per sigma" in _flat(README)
    assert f"about {minutes:.0f} minutes for the quick preset's" in _flat(README)
    assert "takes a few minutes" not in _flat(README)


def test_readme_lists_every_dataset_format_pudlab_reads():
    flat = _flat(README)
    for fragment in ("`.csv` or `.csv.gz`", "`<class>/*.png|jpg`", "`train/<class>/*.png|jpg`", "`.npz`",
                     "`.tar.gz`", "says which layout was read"):
        assert fragment in flat, fragment


def test_readme_cluster_recipe_sets_ray_token_authentication():
    recipe = _flat(README.split("* Cluster:")[1].split("\n* ")[0].split("\n\n")[0])
    assert recipe.count("RAY_AUTH_MODE=token") >= 3  # head, every other node, the driver's shell
    assert "ray get-auth-token --generate" in recipe and "RAY_AUTH_TOKEN" in recipe
    assert recipe.index("RAY_AUTH_MODE=token") < recipe.index("ray start --head")
