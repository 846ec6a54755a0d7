"""Reading the privacy report's JSON objects back into its dataclasses (one strict helper)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields
from typing import Any, TypeVar

from pudlab.errors import PudlabError

T = TypeVar("T")


def require_mapping(data: object, where: str) -> Mapping[str, Any]:
    """``data`` if it is a JSON object, else an error naming ``where``."""
    if not isinstance(data, Mapping):
        raise PudlabError(f"{where}: expected an object, got {type(data).__name__}")
    return data


def list_of(read: Callable[..., T]) -> Callable[..., list[T]]:
    """A converter for :func:`record_from_dict`: a JSON list, each item read by ``read(item, where=...)``."""

    def convert(data: Any, *, where: str) -> list[T]:
        if not isinstance(data, list):
            raise PudlabError(f"{where}: expected a list, got {type(data).__name__}")
        return [read(item, where=f"{where}[{index}]") for index, item in enumerate(data)]

    return convert


def map_of(read: Callable[..., T]) -> Callable[..., dict[str, T]]:
    """A converter for :func:`record_from_dict`: a JSON object, each value read by ``read(value, where=...)``."""

    def convert(data: Any, *, where: str) -> dict[str, T]:
        return {key: read(value, where=f"{where}.{key}") for key, value in require_mapping(data, where).items()}

    return convert


def record_from_dict(cls: type[T], data: object, where: str, *, prefix: str | None = None,
                     **convert: Callable[..., Any]) -> T:
    """``cls(**data)`` for a dataclass, refusing unknown and missing keys.

    ``convert``: per key, a function ``(value, *, where)`` that reads a nested value (a record, a list
    of records); ``prefix`` starts the ``where`` of a nested value (default ``"<where>."``).
    """
    data = require_mapping(data, where)
    names = [item.name for item in fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise PudlabError(f"{where}: unknown key(s) {unknown}; known: {', '.join(names)}")
    required = [item.name for item in fields(cls)  # type: ignore[arg-type]
                if item.default is MISSING and item.default_factory is MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise PudlabError(f"{where}: missing key(s) {missing}")
    start = f"{where}." if prefix is None else prefix
    values = {key: convert[key](value, where=f"{start}{key}") if key in convert else value
              for key, value in data.items()}
    return cls(**values)


def optional(read: Callable[..., T]) -> Callable[..., T | None]:
    """A converter for :func:`record_from_dict`: None (JSON null) stays None, anything else is ``read``."""

    def convert(data: Any, *, where: str) -> T | None:
        return None if data is None else read(data, where=where)

    return convert


def plain_dict(data: Any, *, where: str) -> dict[str, Any]:
    """A converter for :func:`record_from_dict`: a JSON object kept as a dict."""
    return dict(require_mapping(data, where))
