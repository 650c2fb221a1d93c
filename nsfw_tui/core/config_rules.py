"""Allowed values declared on config schema fields, the check that applies them, one-line errors."""

# A rule sits in a field's metadata (`setting(default, Range(1))`), next to the field it
# limits. The same `check_value` runs when the loader sets a value from a file or an
# override (so the error can name the file) and when a section object is built directly
# (`WatchOptions(settle_s=0)` fails like `watch.settle_s=0` does). Types are OmegaConf's job;
# the rules say what a well-typed value may be. OmegaConf is not imported at module level:
# `core.scan` and the watcher import the schema, and must stay cheap to import.

from __future__ import annotations

import dataclasses
import functools
import inspect
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import field
from typing import Any, ClassVar, Self

from .errors import ConfigError

__all__ = [
    "Check",
    "OneOf",
    "Range",
    "Section",
    "base_type",
    "check_value",
    "field_info",
    "same_as",
    "setting",
    "show",
    "type_text",
]


# Plain classes rather than dataclasses: the schema module is on every command's import path.


class Range:
    """A number within bounds; ``low_open``/``high_open`` exclude the bound itself."""

    __slots__ = ("high", "high_open", "low", "low_open")

    def __init__(
        self,
        low: float | None = None,
        high: float | None = None,
        *,
        low_open: bool = False,
        high_open: bool = False,
    ) -> None:
        self.low, self.high, self.low_open, self.high_open = low, high, low_open, high_open

    def ok(self, value: Any) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def text(self, kind: str) -> str:
        if self.low is not None and self.high is not None:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            return f"{kind} in {left}{self.low}, {self.high}{right}"
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low}"
        return f"{kind} {'<' if self.high_open else '<='} {self.high}"


class OneOf:
    """One of a few values, compared with their types (``True`` is not ``1``)."""

    __slots__ = ("options",)

    def __init__(self, *options: Any) -> None:
        self.options = options

    def ok(self, value: Any) -> bool:
        return any(type(value) is type(option) and value == option for option in self.options)

    def text(self, kind: str) -> str:
        return "one of " + ", ".join(str(option) for option in self.options)


class Check:
    """Any other condition: ``test`` decides, ``what`` is how the error describes it."""

    __slots__ = ("test", "what")

    def __init__(self, what: str, test: Callable[[Any], bool]) -> None:
        self.what, self.test = what, test

    def ok(self, value: Any) -> bool:
        try:
            return bool(self.test(value))
        except (TypeError, ValueError):
            return False

    def text(self, kind: str) -> str:
        return self.what


Rule = Range | OneOf | Check


def setting(default: Any, rule: Rule | None = None) -> Any:
    """A dataclass field with its default and, when values are narrower than the type, a rule."""
    metadata = {"rule": rule} if rule is not None else {}
    if isinstance(default, list):
        items = list(default)
        return field(default_factory=lambda: list(items), metadata=metadata)
    return field(default=default, metadata=metadata)


def same_as(section: type, name: str) -> Any:
    """A field that repeats another section's setting: same default, rule and key in errors."""
    source = {f.name: f for f in dataclasses.fields(section)}[name]
    key = f"{section.KEY}.{name}"  # type: ignore[attr-defined]
    return field(default=source.default, metadata={**source.metadata, "key": key})


class Section:
    """Base of a top-level section's dataclass: building one checks every rule in it."""

    KEY: ClassVar[str] = ""  # the section's name in the config, for error messages

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ConfigError for the first value outside its rule (subclasses add cross-checks)."""
        _check_fields(self, self.KEY)

    @classmethod
    def from_config(cls, node: Any, **extra: Any) -> Self:
        """``cls`` from its loaded section (a DictConfig); ``extra`` fills fields it lacks."""
        from omegaconf import OmegaConf  # a loaded config means omegaconf is imported already

        values = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in node:
                value = node[f.name]
                values[f.name] = OmegaConf.to_object(value) if OmegaConf.is_config(value) else value
        return cls(**values, **extra)


def _check_fields(obj: Any, prefix: str) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f.metadata.get("key") or f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(value):
            _check_fields(value, path)
        elif "rule" in f.metadata:
            hint, rule = field_info(type(obj), f.name)
            check_value(path, hint, rule, value)


def check_value(path: str, hint: Any, rule: Rule | None, value: Any, shown: Any = None) -> None:
    """Raise ConfigError unless ``value`` meets ``rule``; the error shows ``shown`` if given."""
    if rule is None or (value is None and _optional(hint)) or rule.ok(value):
        return
    got = value if shown is None else shown
    raise ConfigError(f"{path}: expected {rule.text(_kind(hint))}, got {show(got)}")


@functools.cache
def field_info(cls: type, name: str) -> tuple[Any, Rule | None]:
    """The type hint and the rule of field ``name`` of the dataclass ``cls``."""
    # Hints come from the class that declares the field: a subclass may add fields whose
    # annotations only resolve for type checkers (ScanOptions.decoder).
    owner = next(c for c in cls.__mro__ if name in inspect.get_annotations(c))
    rule = next(f for f in dataclasses.fields(cls) if f.name == name).metadata.get("rule")
    return typing.get_type_hints(owner)[name], rule


def _optional(hint: Any) -> bool:
    union = isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
    return union and type(None) in typing.get_args(hint)


def base_type(hint: Any) -> Any:
    """``X`` for ``X | None``; the hint itself otherwise."""
    if _optional(hint):
        rest = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return rest[0] if len(rest) == 1 else Any
    return hint


_KINDS: dict[Any, tuple[str, str]] = {
    bool: ("true or false", "true/false values"),
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    str: ("a string", "strings"),
}


def _kind(hint: Any) -> str:
    return _KINDS.get(base_type(hint), ("a value", "values"))[0]


def type_text(hint: Any, rule: Rule | None) -> str:
    """What a value of this type is called in an error: "an integer", "a list of numbers"."""
    if isinstance(rule, OneOf):
        return rule.text("")  # a choice reads better as its options than as "a string"
    hint = base_type(hint)
    if dataclasses.is_dataclass(hint):
        return "a mapping (set one of its keys instead)"
    if typing.get_origin(hint) in (list, tuple, Sequence):
        item = typing.get_args(hint)[0] if typing.get_args(hint) else Any
        return f"a list of {_KINDS.get(item, ('', 'values'))[1]}"
    return _kind(hint)


def show(value: Any) -> str:
    """A value as it would be typed on the command line, on one line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {show(v)}" for k, v in value.items()) + "}"
    return str(value)
