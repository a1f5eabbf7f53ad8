"""A model's training lineage: the ``train.py`` commands that made it and every model it started from or learnt from.

A run folder holds its full configuration (``config.json``, or the ``config`` of ``model.meta.json``).
:func:`train_command` turns a config back into the ``train.py`` command that trains it, from the flag table in
``parameters.py``; :func:`training_lineage` follows a run's ``init_from`` and ``teacher`` models to their run
folders and returns their commands, ancestors first. ``experiments/bundled_lineage.py`` writes the bundled
model's ``training_lineage`` with it.

    >>> from parameters import Config
    >>> train_command(Config().with_overrides({"model": "A", "feature_set": "raw", "epochs": 2}), "D", "R")
    'python train.py --data D --features raw --model A --epochs 2 --seed 0 --out R --evaluate'
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from config_fields import ConfigError, flag_name
from errors import UserError
from inference.classifiers import is_peer_file
from parameters import Config

# Always written, even at their defaults: what a reader of the command looks for first.
_ALWAYS = ("model", "feature_set", "epochs", "seed")


class LineageError(UserError):
    """A run folder of the lineage is missing or has no readable configuration."""


def _format(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(value)  # the comma form train.py accepts for --teacher
    if isinstance(value, float):
        short = format(value, "g")
        return short if float(short) == value else repr(value)
    return str(value)


def train_command(config: Config, data: str | Path, out: str | Path, *, evaluate: bool = True) -> str:
    """The ``train.py`` command that trains ``config`` on ``data`` into ``out``: a flag for every field that differs
    from ``Config()`` (and model, features, epochs and seed always), in the flag table's order."""
    defaults, values = Config().flat(), config.flat()
    words = ["python", "train.py", "--data", str(data)]
    for name, (section, f) in Config.fields().items():
        value = getattr(getattr(config, section), name)
        if not f.metadata.get("cli", True) or (name not in _ALWAYS and values[name] == defaults[name]):
            continue
        flag = flag_name(f)
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + flag.removeprefix("--"))
        else:
            words += [flag, _format(value)]
    words += ["--out", str(out)] + (["--evaluate"] if evaluate else [])
    return shlex.join(words)


def read_run_config(run_dir: str | Path) -> Config:
    """The configuration a run folder trained with: ``config.json``, else ``model.meta.json``'s ``config``."""
    run_dir = Path(run_dir)
    for name, key in (("config.json", None), ("model.meta.json", "config")):
        path = run_dir / name
        if path.is_file():
            try:
                data = json.loads(path.read_text())
                return Config.from_saved(data[key] if key else data)
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise LineageError(f"{path}: not a readable run configuration ({err})") from None
    raise LineageError(f"{run_dir}: no config.json or model.meta.json (is it a run folder?)")


def training_lineage(run_dir: str | Path, data: str | Path, *, root: str | Path = ".") -> list[str]:
    """The ``train.py`` commands of ``run_dir`` and of every run it started from (``init_from``) or distilled from
    (``teacher``), each ancestor before the runs that use it. Model paths in the configs are taken relative to
    ``root`` (where the runs were started); a model's run folder is the folder holding it.

    A model whose folder is not a run folder but whose metadata carries ``training_lineage`` (the bundled model,
    whose run folders are gone) contributes that stored lineage, and the commands that use it name it by its own
    last run, ``<its --out>/model.keras``, so the list reads as one chain."""
    root = Path(root)
    order: list[str] = []
    commands: dict[str, str] = {}
    aliases: dict[str, str] = {}  # model path -> <last --out>/model.keras, for models with a stored lineage

    def stored(model: str) -> list[str] | None:
        path = root / model
        if not path.is_file() or any((path.parent / n).is_file() for n in ("config.json", "model.meta.json")):
            return None
        from models.io import read_metadata

        try:
            lineage = read_metadata(path).get("training_lineage")
        except (OSError, ValueError) as err:
            raise LineageError(f"{path}: unreadable metadata ({err})") from None
        return list(lineage) if lineage else None

    def visit(run: Path, path: tuple[str, ...]) -> None:
        key = run.as_posix()
        if key in commands:
            return
        if key in path:
            raise LineageError(f"{run}: its lineage is circular ({' -> '.join((*path, key))})")
        try:
            config = read_run_config(root / run)
        except ConfigError as err:
            raise LineageError(f"{root / run}: {err}") from None
        # a published peer (../shared/peers) has no run of ours to follow: its path stays as written
        sources = [m for m in (config.training.init_from, *config.training.teacher) if m and not is_peer_file(m)]
        for model in sources:
            lineage = stored(model)
            if lineage is None:
                visit(Path(model).parent, (*path, key))
                continue
            for command in lineage:
                words = shlex.split(command)
                out = words[words.index("--out") + 1] if "--out" in words else model
                if out not in commands:
                    commands[out] = command
                    order.append(out)
            aliases[model] = f"{out}/model.keras"
        tr = config.training
        config = config.with_overrides({
            "init_from": aliases.get(tr.init_from, tr.init_from),
            "teacher": [aliases.get(t, t) for t in tr.teacher],
        })
        commands[key] = train_command(config, data, run)
        order.append(key)

    visit(Path(run_dir), ())
    return [commands[key] for key in order]
