"""The machinery of the flag table in ``parameters.py``: a dataclass field that carries its help, choices and valid
range (:func:`option`), the flag it becomes (:func:`flag_name`), and the one check of a value, whether it comes from a
flag, a ``--params`` file or Python (:func:`check_value`). ``parameters.py`` holds the table itself.

Nothing here touches the disk or imports TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from errors import UserError


class ConfigError(UserError, ValueError):
    """A parameter that is unknown, of the wrong type or out of range; the message names the key or the flag."""


@dataclass(frozen=True)
class Bounds:
    """The valid interval of a number: ``at_least``/``above`` below it, ``at_most``/``below`` above it (None: open)."""

    at_least: float | None = None
    above: float | None = None
    at_most: float | None = None
    below: float | None = None

    def problem(self, value: float) -> str | None:
        """Why ``value`` is out of bounds ("must be > 0"), or None when it is within them."""
        if not math.isfinite(value):
            return "must be a finite number"
        if self.at_least is not None and not value >= self.at_least:
            return f"must be >= {self.at_least:g}"
        if self.above is not None and not value > self.above:
            return f"must be > {self.above:g}"
        if self.at_most is not None and not value <= self.at_most:
            return f"must be <= {self.at_most:g}"
        if self.below is not None and not value < self.below:
            return f"must be < {self.below:g}"
        return None

    def __str__(self) -> str:
        low = (f"[{self.at_least:g}" if self.at_least is not None
               else f"({self.above:g}" if self.above is not None else "(-inf")
        high = (f"{self.at_most:g}]" if self.at_most is not None
                else f"{self.below:g})" if self.below is not None else "inf)")
        return f"{low}, {high}"


def option(
    default: Any,
    help: str,  # noqa: A002 - argparse's name
    *,
    choices: tuple[str, ...] | None = None,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
    flag: str | None = None,
    metavar: str | tuple[str, ...] | None = None,
    cli: bool = True,
) -> Any:
    """A dataclass field that describes itself: its help, its choices (for a tuple: of each item) and its range.

    ``flag`` replaces the default ``--field-name``; ``cli=False`` keeps a field off the command line (it is still
    settable from a ``--params`` file or Python).
    """
    bounds = Bounds(at_least, above, at_most, below)
    metadata = {"help": help, "choices": choices, "bounds": None if bounds == Bounds() else bounds,
                "flag": flag, "metavar": metavar, "cli": cli}
    return field(default=default, metadata=metadata)


def flag_name(f: dataclasses.Field) -> str:
    """The command-line flag of a field: ``--learning-rate`` for ``learning_rate`` unless the table names another."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def field_kind(f: dataclasses.Field) -> str:
    """bool | int | float | str | strings | range: what values a field takes (from its default)."""
    default = f.default
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, tuple):
        return "range" if default and all(isinstance(v, float) for v in default) and len(default) == 2 else "strings"
    return type(default).__name__


def check_value(f: dataclasses.Field, value: Any, where: str | None = None) -> Any:
    """``value`` for field ``f``, type-checked and range-checked (lists become tuples; a comma-separated string is
    accepted for a tuple of names). Raises ConfigError naming ``where`` (a key or a flag; default: the field name)."""
    where = where or f.name
    kind = field_kind(f)
    if value is None:
        raise ConfigError(f"{where}: null is not a valid value; give {_describe(kind)}")
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: {value!r} is not {_describe(kind)}")
        return value
    if kind == "strings":
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {value!r} is not {_describe(kind)}")
        _check_choices(f, value, where)
        return tuple(value)
    if kind == "range":
        if (not isinstance(value, list | tuple) or len(value) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
            raise ConfigError(f"{where}: {value!r} is not {_describe(kind)}")
        low, high = (float(v) for v in value)
        for name, v in (("min", low), ("max", high)):
            problem = f.metadata["bounds"].problem(v) if f.metadata.get("bounds") else None
            if problem:
                raise ConfigError(f"{where}: {name} {v:g} {problem}")
        if not low < high:
            raise ConfigError(f"{where}: min {low:g} must be below max {high:g}")
        return (low, high)
    if kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {value!r} is not {_describe(kind)}")
        _check_choices(f, [value], where)
        return value
    # int or float
    if isinstance(value, bool) or not isinstance(value, int | float) or (kind == "int" and not isinstance(value, int)):
        raise ConfigError(f"{where}: {value!r} is not {_describe(kind)}")
    value = float(value) if kind == "float" else value
    bounds = f.metadata.get("bounds")
    problem = bounds.problem(value) if bounds else (None if math.isfinite(value) else "must be a finite number")
    if problem:
        raise ConfigError(f"{where}: {value!r} {problem}")
    return value


def _describe(kind: str) -> str:
    return {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string",
            "strings": "a list of names", "range": "[min, max]"}[kind]


def _check_choices(f: dataclasses.Field, values: list[str] | tuple[str, ...], where: str) -> None:
    choices = f.metadata.get("choices")
    if choices is None:
        return
    unknown = [v for v in values if v not in choices]
    if unknown:
        raise ConfigError(f"{where}: unknown {', '.join(map(repr, unknown))}; choose from {', '.join(choices)}")


def check_all(instance: Any) -> None:
    """Check every field of a dataclass instance with :func:`check_value` (ConfigError on the first bad one)."""
    for f in dataclasses.fields(instance):
        check_value(f, getattr(instance, f.name))


# ------------------------------------------------------------------ argparse types for flags outside the table


def _number(text: str, kind: Callable[[str], Any], valid: Callable[[Any], bool], wanted: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
    if not valid(value):
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse ``type``: an integer >= 1."""
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def non_negative_int(text: str) -> int:
    """argparse ``type``: an integer >= 0."""
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """argparse ``type``: a finite number > 0."""
    return _number(text, float, lambda v: 0 < v < math.inf, "a positive number")


def non_negative_float(text: str) -> float:
    """argparse ``type``: a finite number >= 0."""
    return _number(text, float, lambda v: 0 <= v < math.inf, "a number >= 0")


def below_one(text: str) -> float:
    """argparse ``type``: a number in [0, 1)."""
    return _number(text, float, lambda v: 0 <= v < 1, "a number in [0, 1)")


def fraction(text: str) -> float:
    """argparse ``type``: a number in (0, 1]."""
    return _number(text, float, lambda v: 0 < v <= 1, "a number in (0, 1]")
