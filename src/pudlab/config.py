"""TOML configuration: reading files, resolving shipped specs by name, and one validator.

Every shipped TOML file lives under ``pudlab/specs/<kind>/`` (kinds: ``experiments``, ``presets``,
``profiles``, ``fl``). A spec argument is either a shipped name (``quick``) or a path to a file.
Validation errors have one shape: ``<file>: <table>.<key> = <value>; expected <what>``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from pudlab.errors import SpecError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOMLDecodeError = tomllib.TOMLDecodeError
SPEC_KINDS = ("experiments", "presets", "profiles", "fl")


def parse_toml(text: str, *, source: str) -> dict:
    """Parse TOML text; ``source`` names it in the error."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: not valid TOML ({exc})") from exc


def read_toml(path: str | Path) -> dict:
    """Read a TOML file, with an error naming the file on failure."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise SpecError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not a UTF-8 text file ({exc})") from exc
    except IsADirectoryError as exc:
        raise SpecError(f"{path}: is a directory, expected a TOML file") from exc
    return parse_toml(text, source=str(path))


def shipped_names(kind: str) -> tuple[str, ...]:
    """Names of the shipped TOML files of ``kind`` (sorted)."""
    if kind not in SPEC_KINDS:
        raise ValueError(f"unknown spec kind {kind!r}; known: {', '.join(SPEC_KINDS)}")
    folder = resources.files("pudlab") / "specs" / kind
    return tuple(sorted(item.name[:-5] for item in folder.iterdir() if item.name.endswith(".toml")))


def resolve_spec(kind: str, name_or_path: str | Path, *, what: str | None = None) -> Path:
    """A shipped spec of ``kind`` by name, or an existing TOML file.

    >>> resolve_spec("presets", "quick").name
    'quick.toml'
    """
    shipped = shipped_names(kind)
    text = str(name_or_path)
    path = Path(name_or_path)
    if not path.suffix and text in shipped:
        return Path(str(resources.files("pudlab") / "specs" / kind / f"{text}.toml"))
    if not path.exists():
        raise SpecError(f"{text}: no such {what or kind} file; shipped {kind}: {', '.join(shipped)}")
    return path


def _bounds(low: float | None, high: float | None, low_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"<= {high:g}"
    return ""


_MISSING: Any = ...  # "required": Ellipsis as the default means the key must be present


class Section:
    """Typed access to one TOML table; every error names file, table, key and what was expected.

    >>> section = Section("spec.toml", "train", {"epochs": 0})
    >>> section.integer("epochs", low=1)
    Traceback (most recent call last):
    ...
    pudlab.errors.SpecError: spec.toml: train.epochs = 0; expected an integer >= 1
    """

    def __init__(self, source: str, path: str, data: object) -> None:
        if not isinstance(data, Mapping):
            raise SpecError(f"{source}: [{path}] must be a table, got {type(data).__name__}")
        self.source, self.path, self.data = source, path, dict(data)
        self.used: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self.source}: {self.path + '.' if self.path else ''}{key}"

    def fail(self, key: str, expected: str) -> SpecError:
        """The error for ``key``'s value (raise it)."""
        if key not in self.data:
            return SpecError(f"{self.where(key)} is missing; expected {expected}")
        return SpecError(f"{self.where(key)} = {self.data[key]!r}; expected {expected}")

    def has(self, key: str) -> bool:
        return key in self.data

    def _value(self, key: str, default: Any, expected: str) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is _MISSING:
                raise self.fail(key, expected)
            return default
        return self.data[key]

    def table(self, key: str, default: Any = _MISSING) -> Section:
        """A sub-table as a Section (``default`` when absent, e.g. ``{}``)."""
        value = self._value(key, default, "a table")
        return Section(self.source, f"{self.path + '.' if self.path else ''}{key}", value)

    def get(self, key: str, kinds: type | tuple[type, ...], default: Any = _MISSING, expected: str = "") -> Any:
        """A value of one of ``kinds`` (bool is never an int here unless asked for)."""
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        expected = expected or " or ".join(_KIND_NAMES.get(kind, kind.__name__) for kind in kinds)
        value = self._value(key, default, expected)
        if key not in self.data:
            return value
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            raise self.fail(key, expected)
        return value

    def integer(self, key: str, default: Any = _MISSING, *, low: int | None = None,
                high: int | None = None) -> Any:
        expected = f"an integer {_bounds(low, high, False)}".strip()
        value = self._value(key, default, expected)
        if key not in self.data:
            return value
        if isinstance(value, bool) or not isinstance(value, int) or (low is not None and value < low) \
                or (high is not None and value > high):
            raise self.fail(key, expected)
        return value

    def number(self, key: str, default: Any = _MISSING, *, low: float | None = None, high: float | None = None,
               low_open: bool = False) -> Any:
        """A finite number (int or float) within the bounds."""
        expected = f"a number {_bounds(low, high, low_open)}".strip()
        value = self._value(key, default, expected)
        if key not in self.data:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(key, expected)
        if (low is not None and (value < low or (low_open and value == low))) or (high is not None and value > high):
            raise self.fail(key, expected)
        return value

    def string(self, key: str, default: Any = _MISSING, *, choices: Sequence[str] | None = None) -> Any:
        expected = f"one of {', '.join(choices)}" if choices else "a string"
        value = self._value(key, default, expected)
        if key not in self.data:
            return value
        if not isinstance(value, str) or (choices is not None and value not in choices):
            raise self.fail(key, expected)
        return value

    def boolean(self, key: str, default: Any = _MISSING) -> Any:
        value = self._value(key, default, "true or false")
        if key in self.data and not isinstance(value, bool):
            raise self.fail(key, "true or false")
        return value

    def int_list(self, key: str, default: Any = _MISSING, *, low: int = 0) -> Any:
        expected = f"a list of integers >= {low}"
        value = self._value(key, default, expected)
        if key not in self.data:
            return tuple(value) if isinstance(value, list | tuple) else value
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in value):
            raise self.fail(key, expected)
        return tuple(value)

    def float_list(self, key: str, default: Any = _MISSING, *, low: float | None = None) -> Any:
        expected = "a list of finite numbers" + (f" >= {low:g}" if low is not None else "")
        value = self._value(key, default, expected)
        if key not in self.data:
            return tuple(value) if isinstance(value, list | tuple) else value
        if not isinstance(value, list) or any(
            isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
            or (low is not None and v < low) for v in value
        ):
            raise self.fail(key, expected)
        return tuple(float(v) for v in value)

    def check_keys(self, allowed: Sequence[str]) -> None:
        """Refuse keys outside ``allowed`` (a typo must not be silently ignored)."""
        unknown = sorted(set(self.data) - set(allowed))
        if unknown:
            raise SpecError(f"{self.source}: [{self.path}] has unknown key(s) {unknown}; "
                            f"known: {', '.join(sorted(allowed))}")

    def finish(self) -> None:
        """Refuse any key that was never read."""
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise SpecError(f"{self.source}: [{self.path}] has unknown key(s) {unknown}")


_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true/false", list: "a list",
               dict: "a table"}

__all__ = ["SPEC_KINDS", "Section", "TOMLDecodeError", "parse_toml", "read_toml", "resolve_spec", "shipped_names"]
