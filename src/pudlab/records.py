"""Typed records and their JSON objects, by field name: one ``to_dict`` and one checked ``from_dict``.

A record is a dataclass that inherits :class:`Record`. Its ``to_dict`` writes every field under its
name (nested records by their own ``to_dict``, tuples as lists, integer dict keys as strings), shaped
by four class attributes:

* ``OMIT_NONE``: fields left out of the object when they are None;
* ``DERIVED``: properties written after the fields (``max_score``, a constant ``kind``); ignored
  when the object is read back;
* ``FLATTEN``: record-valued fields whose keys are written into this record's object;
* ``RENAMED``: field -> the key it is written under.

``from_dict`` reads such an object back by the fields' type annotations (records, tuples, lists,
dicts with string or integer keys, optional values, JSON scalars): an unknown key, a missing one or a
value of the wrong JSON type is a :class:`~pudlab.errors.PudlabError` that names where it is
(``privacy.json: sigmas[0].dp.delta``) and what was expected. Values are never converted (an integer
stays an integer where a float is allowed), so a record read back writes the same bytes.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Self, TypeVar

from pudlab.errors import PudlabError

_SCALARS: dict[type, tuple[str, str]] = {bool: ("true or false", "booleans"), int: ("an integer", "integers"),
                                         float: ("a number", "numbers"), str: ("a string", "strings")}
"""JSON scalar types a field may be annotated with: (singular, plural) of their description."""
_UNIONS = (typing.Union, types.UnionType)


class Record:
    """Mixin of a dataclass stored as a JSON object (see the module docstring)."""

    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
    OMIT_NONE: ClassVar[tuple[str, ...]] = ()
    DERIVED: ClassVar[tuple[str, ...]] = ()
    FLATTEN: ClassVar[tuple[str, ...]] = ()
    RENAMED: ClassVar[Mapping[str, str]] = {}

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: every field by name, then the ``DERIVED`` properties."""
        data: dict[str, Any] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if value is None and item.name in self.OMIT_NONE:
                continue
            if item.name in self.FLATTEN:
                data.update(value.to_dict())
            else:
                data[self.RENAMED.get(item.name, item.name)] = plain(value)
        for name in self.DERIVED:
            data[name] = plain(getattr(self, name))
        return data

    @classmethod
    def from_dict(cls, data: object, *, where: str | None = None) -> Self:
        """Read :meth:`to_dict`'s object back; errors name ``where`` (default: the class name)."""
        return record_from_dict(cls, data, cls.__name__ if where is None else where)


def plain(value: Any) -> Any:
    """``value`` as JSON data: records (anything with ``to_dict``) as objects, tuples as lists,
    integer dict keys as strings; scalars unchanged."""
    if hasattr(value, "to_dict") and not isinstance(value, type):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        raise TypeError(f"{type(value).__name__} is a dataclass but not a record (it has no to_dict)")
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key) if isinstance(key, int) else key: plain(item) for key, item in value.items()}
    return value


def require_mapping(data: object, where: str) -> Mapping[str, Any]:
    """``data`` if it is a JSON object, else an error naming ``where``."""
    if not isinstance(data, Mapping):
        raise PudlabError(f"{where}: expected an object, got {type(data).__name__}")
    return data


R = TypeVar("R", bound="Record")


def record_from_dict(cls: type[R], data: object, where: str, *, prefix: str | None = None) -> R:
    """``cls`` read from the JSON object ``data`` (see the module docstring).

    ``where`` starts every error message; ``prefix`` starts the ``where`` of a nested value
    (default ``"<where>."``).
    """
    remaining = {key: value for key, value in require_mapping(data, where).items() if key not in cls.DERIVED}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for name in cls.FLATTEN:
        inner: type[Record] = hints[name]
        keys = {item.name for item in dataclasses.fields(inner)} | set(inner.DERIVED)
        values[name] = inner.from_dict({key: remaining.pop(key) for key in list(remaining) if key in keys},
                                       where=where)
    own = {cls.RENAMED.get(item.name, item.name): item for item in dataclasses.fields(cls)
           if item.name not in cls.FLATTEN}
    unknown = sorted(set(remaining) - set(own))
    if unknown:
        raise PudlabError(f"{where}: unknown key(s) {unknown}; known: {', '.join(own)}")
    required = [key for key, item in own.items()
                if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING]
    missing = [key for key in required if key not in remaining]
    if missing:
        raise PudlabError(f"{where}: missing key(s) {missing}; expected {', '.join(required)}")
    start = f"{where}." if prefix is None else prefix
    for key, value in remaining.items():
        name = own[key].name
        values[name] = read_value(hints[name], value, f"{start}{key}")
    return cls(**values)


def read_value(hint: Any, value: Any, where: str) -> Any:
    """``value`` checked against the annotation ``hint`` (records read by their ``from_dict``,
    JSON lists as tuples where the annotation says tuple); an error names ``where`` otherwise."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is object:
        return value
    if origin in _UNIONS:
        if value is None and type(None) in args:
            return None
        options = [option for option in args if option is not type(None)]
        for option in options:
            try:
                return read_value(option, value, where)
            except PudlabError as exc:
                if len(options) == 1:
                    raise exc from None
        raise PudlabError(f"{where}: expected {describe(hint)}, got {value!r:.80}")
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint.from_dict(value, where=where)
    if origin in (tuple, list) or hint in (tuple, list):
        if not isinstance(value, list | tuple):
            raise PudlabError(f"{where}: expected {describe(hint)}, got {type(value).__name__}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise PudlabError(f"{where}: expected {describe(hint)}, got {len(value)} item(s)")
            return tuple(read_value(item_hint, item, f"{where}[{index}]")
                         for index, (item_hint, item) in enumerate(zip(args, value, strict=True)))
        items = [read_value(args[0] if args else Any, item, f"{where}[{index}]") for index, item in enumerate(value)]
        return tuple(items) if origin is tuple or hint is tuple else items
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        key_hint, value_hint = args or (str, Any)
        return {_read_key(key_hint, key, where): read_value(value_hint, item, f"{where}.{key}")
                for key, item in require_mapping(value, where).items()}
    if hint in _SCALARS:
        return _check_scalar(hint, value, where)
    raise TypeError(f"{where}: a record field annotated {hint!r} cannot be read from JSON")


def _check_scalar(hint: type, value: Any, where: str) -> Any:
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint in (int, float):
        ok = isinstance(value, int | float if hint is float else int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, hint)
    if not ok:
        raise PudlabError(f"{where}: expected {describe(hint)}, got {value!r:.80}")
    return value


def _read_key(hint: Any, key: str, where: str) -> Any:
    if hint is int:
        try:
            return int(key)
        except ValueError:
            raise PudlabError(f"{where}: key {key!r:.80} is not an integer") from None
    return key


def describe(hint: Any, *, plural: bool = False) -> str:
    """What a JSON value of annotation ``hint`` looks like, in words ("a list of numbers")."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint in _SCALARS:
        return _SCALARS[hint][plural]
    if origin in _UNIONS:
        return " or ".join("null" if option is type(None) else describe(option, plural=plural) for option in args)
    if origin in (tuple, list) or hint in (tuple, list):
        items = {arg for arg in args if arg is not Ellipsis}
        count = f" {len(args)}" if origin is tuple and args and args[-1] is not Ellipsis else ""
        kind = describe(items.pop(), plural=True) if len(items) == 1 else "items"
        return ("lists" if plural else "a list") + (f" of{count} {kind}" if count or kind != "items" else "")
    return "objects" if plural else "an object"


__all__ = ["Record", "describe", "plain", "read_value", "record_from_dict", "require_mapping"]
