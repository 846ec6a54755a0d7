"""The one lazy-import helper behind ``pudlab``, ``pudlab.fl`` and ``pudlab.pol``: names resolve on first
use, are bound in the package afterwards, and anything else is an AttributeError."""

from __future__ import annotations

import subprocess
import sys

import pytest

import pudlab
import pudlab.fl
import pudlab.pol


@pytest.mark.parametrize("package", [pudlab, pudlab.fl, pudlab.pol])
def test_every_lazy_name_resolves_and_is_listed(package) -> None:
    names = [name for name in package.__all__ if name != "__version__"]
    assert names and all(getattr(package, name) is not None for name in names)
    assert set(names) <= set(dir(package))
    with pytest.raises(AttributeError, match=rf"module '{package.__name__}' has no attribute 'nonsense'"):
        package.nonsense  # noqa: B018


def test_first_use_binds_the_name_and_imports_only_its_module() -> None:
    probe = ("import sys, pudlab.pol as pol\n"
             "assert 'torch' not in sys.modules and 'Manifest' not in vars(pol)\n"
             "manifest = pol.Manifest\n"
             "assert vars(pol)['Manifest'] is manifest and manifest.__module__ == 'pudlab.pol.manifest'\n"
             "assert 'pudlab.pol.evaluation' not in sys.modules\n"
             "import pudlab.fl as fl\n"
             "assert 'pudlab.fl.simulation' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
