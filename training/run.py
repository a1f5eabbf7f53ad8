"""A training run and its folder: what a run is given (:class:`TrainingRun`), what it returns (:class:`TrainResult`)
and the files it writes.

A run directory holds::

    config.json                    the full configuration, written before the first step (what --resume continues)
    model.keras, model.meta.json   best-on-PublicTest model + metadata (models.io; SVM: model.skops)
    checkpoints/last.keras         the latest epoch's model with its optimizer state (for --resume)
    checkpoints/state.json         epochs done, best accuracy/epoch, early-stopping counter, history, config
    history.csv                    one row per epoch: loss, accuracy, val_loss, val_accuracy, lr
    learning_curves.png            loss and accuracy per epoch
    logs/                          TensorBoard

Every file is written to a temporary name and renamed, so an interrupted run never leaves a half-written one.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data.splits import SplitData
from errors import UserError
from parameters import EMOTIONS, FEATURE_SETS, Config

MODEL_FILE = "model.keras"
SVM_MODEL_FILE = "model.skops"
CONFIG_FILE = "config.json"
STATE_VERSION = 1
NORMALISATION_TEXT = (
    "image: grey levels 0..255 float32, rescaled by 1/255 inside the model; features: raw values, standardised "
    "inside the model by the feature_norm Normalization layer (mean/variance of the Training split; mean 0 and "
    "variance 1, i.e. raw values, when trained with --no-standardize-features)"
)


class TrainingError(UserError, ValueError):
    """Bad configuration, incompatible resume state or init/teacher model, or a run that diverged."""


@dataclass(frozen=True)
class TrainResult:
    """What ``train`` returns."""

    best_public_accuracy: float  # best PublicTest accuracy over the epochs (the selection criterion)
    model_path: Path  # RUN_DIR/model.keras (RUN_DIR/model.skops for the svm): the best-on-PublicTest model
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch loss, accuracy, val_*, lr
    best_epoch: int = 0  # 1-based epoch of the best model
    epochs_run: int = 0  # epochs completed in total (including those before a resume)
    train_seconds: float = 0.0  # wall time of those epochs (validation included), summed over resumes
    stopped_early: bool = False
    run_dir: Path | None = None


@dataclass
class TrainingRun:
    """Everything one run is given, checked and loaded once by ``training.trainer.train``."""

    config: Config  # with the data's class names as expressions
    out_dir: Path
    class_names: list[str]
    data_meta: dict[str, Any]  # the converted directory's meta.json
    checksum: str  # data_sha256 of the saved model (see data.splits.data_checksum)
    train_data: SplitData
    public: SplitData
    verbose: int = 1  # 0 silent, 1 progress bar and a line per epoch, 2 one line per epoch
    teacher: Callable[[np.ndarray, np.ndarray | None], np.ndarray] | None = None  # training.teacher.make_teacher

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def feature_dim(self) -> int:
        return FEATURE_SETS[self.config.dataset.feature_set]

    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    def log(self, message: str) -> None:
        if self.verbose:
            print(message, flush=True)

    def metadata(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """The metadata saved with this run's model, with ``metrics``."""
        return build_metadata(self.config, self.class_names, self.data_meta, self.checksum, metrics)


def build_metadata(
    config: Config, class_names: list[str], data_meta: dict[str, Any], checksum: str, metrics: dict[str, Any]
) -> dict[str, Any]:
    """The metadata saved with a model (docs/DESIGN.md)."""
    feature_set = config.dataset.feature_set
    return {
        "model_name": config.network.model,
        "class_names": list(class_names),
        "expressions": list(data_meta.get("expressions") or [EMOTIONS.index(c) for c in class_names if c in EMOTIONS]),
        "expression_mapping": data_meta.get("expression_mapping"),
        "feature_set": feature_set,
        "feature_dim": FEATURE_SETS[feature_set],
        "input_size": [config.network.input_size, config.network.input_size],
        "normalisation": NORMALISATION_TEXT,
        "config": config.to_dict(),
        "data_sha256": checksum,
        "metrics": metrics,
    }


# --------------------------------------------------------------------------------------------------- files


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``.NAME.partial`` beside ``path``, then rename: readers see the old file or the new one."""
    tmp = path.with_name(f".{path.name}.partial")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1) + "\n")


def write_history_csv(path: Path, history: dict[str, list[float]]) -> None:
    """``history.csv``: a header ``epoch,<keys>`` and one row per epoch."""
    keys = list(history)
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["epoch", *keys])
            for i in range(len(history[keys[0]]) if keys else 0):
                writer.writerow([i + 1, *(history[k][i] for k in keys)])
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def plot_learning_curves(history: dict[str, list[float]], path: Path, title: str = "") -> Path:
    """Loss and accuracy (Training and PublicTest) per epoch as a PNG (matplotlib, no global backend)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(10, 4), layout="constrained")
    for ax, key, label in zip(fig.subplots(1, 2), ("loss", "accuracy"), ("loss", "accuracy"), strict=True):
        for name, style, split in ((key, "-", "Training"), (f"val_{key}", "--", "PublicTest")):
            values = history.get(name)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, marker="o", label=f"{split} {key}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=100)
    return path


# --------------------------------------------------------------------------------------------------- resume


def check_same_task(prefix: str, theirs: tuple[str, str, list[str]], config: Config, class_names: list[str]) -> None:
    """TrainingError ``"{prefix} {what} {theirs}, not {ours}"`` when (model, feature set, classes) differ."""
    ours = (config.network.model, config.dataset.feature_set, class_names)
    for what, old, new in zip(("model", "feature_set", "classes"), theirs, ours, strict=True):
        if old != new:
            raise TrainingError(f"{prefix} {what} {old}, not {new}")


def read_state(out_dir: str | Path) -> tuple[dict[str, Any], Config] | None:
    """The checkpoint state of the interrupted run in ``out_dir`` and its config; None without checkpoints."""
    state_path = Path(out_dir) / "checkpoints" / "state.json"
    if not (state_path.is_file() and (Path(out_dir) / "checkpoints" / "last.keras").is_file()):
        return None
    try:
        state = json.loads(state_path.read_text())
        return state, Config.from_saved(state["config"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise TrainingError(f"cannot resume {out_dir}: {state_path} is unreadable ({err})") from None


def saved_config(out_dir: str | Path) -> Config | None:
    """The config of the run in ``out_dir`` (what ``--resume`` continues): the checkpoint's, else ``config.json``
    (a run interrupted before its first checkpoint); None when ``out_dir`` holds no run."""
    found = read_state(out_dir)
    if found is not None:
        return found[1]
    path = Path(out_dir) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return Config.from_saved(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise TrainingError(f"cannot resume {out_dir}: {path} is unreadable ({err})") from None


def require_run(out_dir: str | Path) -> None:
    """TrainingError naming ``out_dir`` when it holds no run to resume (empty, mistyped or never trained)."""
    out_dir = Path(out_dir)
    if not (out_dir / CONFIG_FILE).is_file() and read_state(out_dir) is None:
        what = "does not exist" if not out_dir.exists() else f"holds no run (no {CONFIG_FILE} or checkpoints/)"
        raise TrainingError(f"--resume: {out_dir} {what}; check the folder, or drop --resume to start a new run")
