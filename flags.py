"""Command-line flags from the table in ``parameters.py``, and configs from the parsed flags.

Every field of a ``parameters`` dataclass describes itself (help, choices, valid range; see
``parameters.option``); :func:`add_fields` turns the fields into argparse flags, so no script repeats a flag that
the table defines, and :func:`config_from_args` / :func:`replace_from_args` turn the parsed flags back into a
config. A value out of range is refused while parsing, as one line naming the flag (exit 2):

    >>> import argparse
    >>> from parameters import Hyperparams
    >>> parser = argparse.ArgumentParser(prog="train.py")
    >>> add_fields(parser, Hyperparams, ["learning_rate"])
    >>> replace_from_args(Hyperparams(), parser.parse_args(["--learning-rate", "0.1"])).learning_rate
    0.1
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from config_fields import ConfigError, check_value, field_kind, flag_name
from parameters import Config, load_params_file


def dest(f: dataclasses.Field) -> str:
    """The argparse destination of a field's flag: ``--features`` -> ``features``."""
    return flag_name(f).removeprefix("--").replace("-", "_")


class _Checked(argparse.Action):
    """Stores a flag's value after :func:`parameters.check_value`; a bad one is ``parser.error`` naming the flag."""

    def __init__(self, *args: Any, field: dataclasses.Field, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.field = field

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if field_kind(self.field) == "strings":  # --teacher a.keras b.keras, or the comma form a.keras,b.keras
            values = [part for value in values for part in value.split(",") if part]
        try:
            setattr(namespace, self.dest, check_value(self.field, values, option_string or flag_name(self.field)))
        except ConfigError as err:
            parser.error(str(err))


def _format_default(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value) or "none"
    return "none" if value == "" else str(value)


def cli_fields(cls: Any) -> list[dataclasses.Field]:
    """The fields of dataclass ``cls`` that have a flag (all but those marked ``cli=False``), in table order."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def add_fields(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: Any,
    names: Iterable[str] | None = None,
    *,
    defaults: Any = None,
    choices: dict[str, Sequence[str]] | None = None,
) -> None:
    """Add one flag per field of dataclass ``cls`` (those in ``names``, in that order; default: every field that has
    a flag), with the field's help, choices and range. The flags default to None ("not given"), so a config built
    from them keeps its own values where no flag was given; the help shows ``defaults``' value (default: the
    class's). ``choices`` adds choice lists the table cannot know (``{"model": models.available_models()}``)."""
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    fields = cli_fields(cls) if names is None else [by_name[name] for name in names]
    for f in fields:
        default = getattr(defaults, f.name) if defaults is not None else f.default
        field_choices = (choices or {}).get(f.name) or f.metadata.get("choices")
        help_text = f.metadata.get("help", "")
        if f.metadata.get("bounds") is not None:
            help_text += f"; in {f.metadata['bounds']}"
        if field_kind(f) == "strings" and field_choices is not None:
            help_text += f"; from {', '.join(field_choices)}"
        help_text += f" (default: {_format_default(default)})"
        kwargs: dict[str, Any] = {"dest": dest(f), "default": None, "help": help_text.replace("%", "%%")}
        kind = field_kind(f)
        if kind == "bool":
            parser.add_argument(flag_name(f), action=argparse.BooleanOptionalAction, **kwargs)
            continue
        kwargs.update(action=_Checked, field=f, metavar=f.metadata.get("metavar"))
        if kind == "range":
            kwargs.update(type=float, nargs=2, metavar=f.metadata.get("metavar") or ("MIN", "MAX"))
        elif kind == "strings":
            kwargs.update(type=str, nargs="+")
        elif kind in ("int", "float"):
            number = (int, "N") if kind == "int" else (float, "X")
            kwargs.update(type=number[0], metavar=kwargs["metavar"] or number[1])
        if field_choices is not None and kind == "str":
            kwargs["choices"] = list(field_choices)
        elif field_choices is not None and kwargs["metavar"] is None:
            kwargs["metavar"] = "{" + ",".join(field_choices) + "}"
        parser.add_argument(flag_name(f), **kwargs)


def add_config_fields(parser: argparse.ArgumentParser, *, defaults: Config | None = None,
                      choices: dict[str, Sequence[str]] | None = None,
                      names: Iterable[str] | None = None, title: str = "") -> None:
    """Add the flags of every Config field that has one (or those in ``names``), one argument group per section."""
    defaults = defaults or Config()
    wanted = None if names is None else set(names)
    for section in ("dataset", "network", "hyperparams", "training"):
        instance = getattr(defaults, section)
        fields = [f.name for f in cli_fields(type(instance)) if wanted is None or f.name in wanted]
        if fields:
            group = parser.add_argument_group(f"{title}{section} (parameters.{type(instance).__name__})")
            add_fields(group, type(instance), fields, defaults=instance, choices=choices)


def given(args: argparse.Namespace, fields: Iterable[dataclasses.Field]) -> dict[str, Any]:
    """``{field name: value}`` of the flags of ``fields`` that were given (not None) in ``args``."""
    return {f.name: getattr(args, dest(f)) for f in fields if getattr(args, dest(f), None) is not None}


def replace_from_args(instance: Any, args: argparse.Namespace) -> Any:
    """``dataclasses.replace(instance, ...)`` with every flag of its fields that was given."""
    return dataclasses.replace(instance, **given(args, dataclasses.fields(instance)))


def config_from_args(args: argparse.Namespace, base: Config | None = None,
                     params_file: str | Path | None = None) -> Config:
    """``base`` (default ``Config()``) <- the ``--params`` file <- every Config flag given in ``args``; validated.

    ConfigError names the file and key of a bad ``--params`` value (``best.json: epochs: '3' is not an integer``).
    """
    config = base or Config()
    if params_file is not None:
        try:
            config = config.with_overrides(load_params_file(params_file))
        except ConfigError as err:
            message = str(err)  # load_params_file's own errors start with the path already
            raise ConfigError(message if message.startswith(str(params_file)) else f"{params_file}: {message}") \
                from None
    fields = [f for _, f in Config.fields().values()]
    config = config.with_overrides(given(args, fields))
    config.validate()
    return config
