"""Public names loaded on first use (PEP 562), so that importing a package stays cheap.

``import pudlab`` (and ``pudlab --help``) must not import torch or matplotlib; a package lists where
each public name lives and gets its module ``__getattr__`` and ``__dir__`` from :func:`lazy_exports`:

>>> getattr_, dir_ = lazy_exports("pudlab", {"derive_seed": "pudlab.seeding"})
>>> getattr_("derive_seed").__name__
'derive_seed'
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(``__getattr__``, ``__dir__``) of ``package``, whose public name ``name`` lives in the module
    ``exports[name]`` (absolute, or relative to ``package`` when it starts with a dot).

    The first use of a name imports its module and binds the value in the package, so later uses
    are plain attribute reads; any other name is an ``AttributeError``. ``dir(package)`` lists the
    package's ``__all__`` and the lazy names.
    """

    def module_getattr(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def module_dir() -> list[str]:
        return sorted(set(getattr(sys.modules[package], "__all__", ())) | set(exports))

    return module_getattr, module_dir


__all__ = ["lazy_exports"]
