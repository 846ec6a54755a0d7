"""Command-line options generated from a dataclass: one option per field, its help the field's docstring.

``pudlab run`` and ``pudlab reproduce`` take every field of :class:`~pudlab.experiments.spec.Preset`
(overrides of the chosen preset) and of :class:`~pudlab.experiments.options.RunOptions` this way, so
a documented field is an option without further code. The option of field ``max_train_size`` is
``--max-train-size``; its type follows the annotation:

* ``int``, ``float``, ``str``: one value; a ``Literal[...]``: one of its values;
* ``bool``: a ``--name/--no-name`` pair;
* ``tuple[...]``: comma-separated or repeated values (``--sigmas 0,0.5`` or ``--sigma 0 --sigma 0.5``),
  each converted to the element type.

Every option defaults to None (not given): the dataclass default, or the preset's value, applies.
A field's ``metadata["option"]`` may set ``name`` (another option name), ``min`` (the least value
taken) and ``split`` (False: values are not comma-separated). Values are checked by the dataclass'
own validator, so a bad value fails the same way from a TOML file and from the command line.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from pudlab.errors import PudlabError

T = TypeVar("T")


def _class_source(cls: type) -> ast.ClassDef:
    """The syntax tree of ``cls``, a class at the top level of its module: only the class' own lines are
    parsed (parsing the whole module would cost more than the rest of ``pudlab --help``)."""
    path = inspect.getsourcefile(cls)
    lines = Path(path).read_text(encoding="utf-8").splitlines() if path else []
    header = re.compile(rf"class {re.escape(cls.__qualname__)}\b")
    start = next((number for number, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        raise TypeError(f"{cls.__qualname__}: no source of the class at the top level of its module")
    while start > 0 and lines[start - 1].startswith("@"):  # its decorators
        start -= 1
    end = next((number for number in range(start + 1, len(lines))
                if lines[number][:1] not in ("", " ", "\t", "#", ")")), len(lines))
    try:
        tree = ast.parse("\n".join(lines[start:end]))
    except SyntaxError:  # a string in the body reaches column 0: parse the whole module
        tree = ast.parse("\n".join(lines))
    return next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == cls.__qualname__)


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring (the string right below the field in the class body) as plain text."""
    body = _class_source(cls).body
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.replace("``", "").split())  # reST literals: plain
    return docs


def option_fields(cls: type, exclude: tuple[str, ...] = ()) -> list[dataclasses.Field]:
    """The fields of dataclass ``cls`` that get an option: set by ``__init__`` and not in ``exclude``."""
    return [item for item in dataclasses.fields(cls) if item.init and item.name not in exclude]


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _scalar_type(annotation: Any, minimum: float | None) -> click.ParamType:
    if typing.get_origin(annotation) is typing.Literal:
        return click.Choice([str(value) for value in typing.get_args(annotation)])
    if annotation is int:
        return click.INT if minimum is None else click.IntRange(min=int(minimum))
    if annotation is float:
        return click.FLOAT if minimum is None else click.FloatRange(min=minimum)
    if annotation is str:
        return click.STRING
    raise TypeError(f"no command-line type for {annotation!r}")


def _list_callback(element: click.ParamType, split: bool) -> Callable[..., tuple | None]:
    def convert(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple | None:
        if not values:
            return None
        items = [part.strip() for text in values for part in (text.split(",") if split else [text])]
        items = [item for item in items if item]
        if not items:
            raise click.BadParameter("expected at least one value", ctx, param)
        return tuple(element.convert(item, param, ctx) for item in items)

    return convert


def _default_note(item: dataclasses.Field, name: str) -> str:
    if item.default is dataclasses.MISSING or item.default is None:
        return ""
    if isinstance(item.default, bool):
        return f" [default: --{'' if item.default else 'no-'}{name}]"
    if isinstance(item.default, tuple):
        return f" [default: {','.join(str(value) for value in item.default) or 'none'}]"
    return f" [default: {item.default}]"


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def option_name(item: dataclasses.Field) -> str:
    """The long option name of a field, e.g. ``--max-train-size``."""
    return "--" + str(item.metadata.get("option", {}).get("name", item.name.replace("_", "-"))).removeprefix("--")


def field_option(item: dataclasses.Field, annotation: Any, doc: str, note: str | None = None) -> Decorator:
    """The option of one field (see the module docstring); ``note`` replaces the default shown in its help."""
    settings = dict(item.metadata.get("option", {}))
    name = option_name(item).removeprefix("--")
    annotation = _without_none(annotation)
    help_text = doc + (note if note is not None else _default_note(item, name))
    if annotation is bool:
        return click.option(f"--{name}/--no-{name}", item.name, default=None, help=help_text)
    if typing.get_origin(annotation) is tuple:
        element = _scalar_type(typing.get_args(annotation)[0], settings.get("min"))
        split = bool(settings.get("split", True))
        singular = [f"--{name[:-1]}"] if name.endswith("s") else []
        metavar = f"{element.name.upper()}{',...' if split else ''}"
        return click.option(f"--{name}", *singular, item.name, multiple=True, metavar=metavar,
                            callback=_list_callback(element, split),
                            help=help_text + (" Comma-separated or repeated." if split else " Repeatable."))
    return click.option(f"--{name}", item.name, type=_scalar_type(annotation, settings.get("min")), default=None,
                        help=help_text)


def field_options(cls: type, *, exclude: tuple[str, ...] = (), note: str | None = None) -> list[Decorator]:
    """One option (a click decorator) per field of dataclass ``cls`` but ``exclude``, in field order; every
    such field needs a docstring. ``note`` replaces the default shown in each help (e.g. the preset's)."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    undocumented = [item.name for item in option_fields(cls, exclude) if not docs.get(item.name)]
    if undocumented:
        raise TypeError(f"{cls.__name__}: fields without a docstring (their --help): {undocumented}")
    return [field_option(item, hints[item.name], docs[item.name], note) for item in option_fields(cls, exclude)]


def given_fields(values: dict[str, Any], cls: type, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """Remove the parameters of ``cls``'s field options from a command's ``values``; return the given ones."""
    taken = {item.name: values.pop(item.name, None) for item in option_fields(cls, exclude)}
    return {name: value for name, value in taken.items() if value is not None}


def build_checked(build: Callable[[dict[str, Any]], T], given: dict[str, Any], cls: type) -> T:
    """``build(given)``; if the values are refused, the error names the option at fault: the first given
    field that ``build`` refuses on its own (a usage error, like a value of the wrong type)."""
    try:
        return build(given)
    except PudlabError:
        by_name = {item.name: item for item in dataclasses.fields(cls)}
        for name, value in given.items():
            try:
                build({name: value})
            except PudlabError as alone:
                raise click.BadParameter(str(alone), param_hint=f"'{option_name(by_name[name])}'") from alone
        raise
