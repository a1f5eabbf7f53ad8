"""Configuration for every script, as frozen dataclasses with the original repository's names and defaults.

The 2016 repository kept its settings as mutable class attributes in ``parameters.py``; the names survive here
(``Dataset``, ``Network``, ``Hyperparams``, ``Training``, ``VideoPredictor``, ``OptimizerSearchSpace``) so a reader
of the original finds their way, but each is a frozen dataclass: override with ``dataclasses.replace`` or with
``Config.with_overrides`` (what the command-line flags and ``--params FILE.json`` do).

This file is also the flag table: every field carries its help text and, where it applies, its choices and its
valid range (``config_fields.option``). ``flags.py`` turns the fields into argparse flags and parsed flags back
into a config, so ``train.py``, ``optimize_hyperparams.py`` and ``experiments/reproduce_table.py`` define no flag
of their own for a config field. ``config_fields.check_value`` is the one check of a value, whether it comes from
a flag, a ``--params`` file or Python.

Nothing here imports TensorFlow; only :func:`load_params_file` reads a file.

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

from config_fields import ConfigError, check_all, check_value, option

# ------------------------------------------------------------------------------------------ choice lists
# Each closed set of names is defined here once; flags, validation and the code that dispatches on a name use these.

# FER2013 class order (the integer in the csv's ``emotion`` column indexes this tuple).
EMOTIONS: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")
SPLITS: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
OPTIMIZERS: tuple[str, ...] = ("momentum", "adam", "rmsprop", "adagrad", "adadelta")
SCHEDULES: tuple[str, ...] = ("exponential", "cosine", "onecycle")
# Weight initialisers of Models A/B: Keras' default (Glorot uniform) or the 2016 code's tflearn defaults.
INITIALIZERS: tuple[str, ...] = ("keras", "tflearn")
SVM_KERNELS: tuple[str, ...] = ("rbf", "linear", "poly", "sigmoid")
# Test-time augmentation at evaluation: "flip" averages each face with its mirror image; "ten-crop" averages ten
# views, five 46x46 crops (corners and centre, resized back to 48x48) and their mirrors (data.augment.ten_crop_views).
TTA_MODES: tuple[str, ...] = ("flip", "ten-crop")
DETECTORS: tuple[str, ...] = ("dlib", "haar", "cnn", "dlib+haar", "dlib+cnn")  # inference.faces.DETECTOR_STAGES
EXPORT_FORMATS: tuple[str, ...] = ("onnx", "tflite")

# The feature-set table. A feature set is pixels only, or pixels joined with a feature vector made of these parts,
# laid out in this order: landmarks (68 x 2 = 136), then plain HOG (72) or sliding-window HOG (2,592).
FEATURE_PART_DIMS: dict[str, int] = {"landmarks": 136, "hog_plain": 72, "hog_windows": 2592}
FEATURE_PARTS: dict[str, tuple[str, ...]] = {
    "raw": (),
    "landmarks": ("landmarks",),
    "landmarks_hog": ("landmarks", "hog_plain"),
    "landmarks_hog_windows": ("landmarks", "hog_windows"),
}
# feature set -> length of its feature vector (0 for raw)
FEATURE_SETS: dict[str, int] = {name: sum(FEATURE_PART_DIMS[p] for p in parts) for name, parts in FEATURE_PARTS.items()}


# -------------------------------------------------------------------------------------------- the sections


@dataclass(frozen=True)
class Dataset:
    """What to read and which features to feed the network."""

    expressions: tuple[str, ...] = option(
        EMOTIONS, "class names the model predicts, in output order (set from the converted data)",
        choices=EMOTIONS, cli=False)
    # The original's use_landmarks / use_hog_and_landmarks / use_hog_sliding_window_and_landmarks flags collapse
    # into this one choice.
    feature_set: str = option(
        "landmarks_hog_windows", "what joins the pixels: raw (pixels only), landmarks, landmarks + HOG, or "
        "landmarks + sliding-window HOG", choices=tuple(FEATURE_SETS), flag="--features")
    # the original's trunc_*set_to
    trunc_trainset_to: int = option(-1, "keep only the first N Training faces (-1: all)", at_least=-1)
    trunc_validationset_to: int = option(-1, "keep only the first N PublicTest faces (-1: all)", at_least=-1)


@dataclass(frozen=True)
class Network:
    """Architecture choice; see models.available_models() for the names."""

    model: str = option("B", "architecture, from the model registry (models.available_models())")
    input_size: int = option(48, "side of the square grey input in pixels", at_least=8, cli=False)
    use_batchnorm_after_conv_layers: bool = option(True, "batch normalisation after each convolution")
    use_batchnorm_after_fully_connected_layers: bool = option(
        False, "batch normalisation after each fully connected layer")
    initializer: str = option(
        "keras", "weight initialisation of Models A/B: keras (Glorot uniform) or tflearn (the 2016 code's: conv "
        "uniform +-sqrt(3/fan_in), fully connected truncated normal with stddev 0.02)", choices=INITIALIZERS)
    width: int = option(32, "fernet only: channels of the first stage (doubled at each of its three stages)",
                        at_least=1)
    last_stage_blocks: int = option(
        2, "fernet only: residual blocks of its last stage (6x6, 8 x width channels); each one more adds 0.3 M "
        "parameters at width 16 for ~10 % of the speed. --init-from a model with fewer grows it: the new blocks "
        "start as the identity, so training starts from the smaller model's exact predictions", at_least=1)
    # The 2016 code fed feature vectors raw (landmark coordinates 0..48 next to HOG values below 1), which scales
    # each part's share of the first FC layer.
    standardize_features: bool = option(
        True, "standardise landmark/HOG features with Training statistics inside the model; "
        "--no-standardize-features feeds them raw, as the 2016 code did")


@dataclass(frozen=True)
class Hyperparams:
    """Optimisation settings. The first six are the original's tuned values for model B."""

    keep_prob: float = option(0.956, "dropout keep probability (dropout rate = 1 - keep_prob)", above=0, at_most=1)
    learning_rate: float = option(0.016, "initial learning rate", above=0)
    learning_rate_decay: float = option(
        0.864, "exponential schedule: decay factor applied every --decay-step steps", above=0, at_most=1)
    decay_step: int = option(50, "exponential schedule: optimizer steps per decay (continuous, as tflearn's)",
                             at_least=1)
    optimizer: str = option(
        "momentum", "optimizer of the weights (--optimizer-param is its momentum, beta1 or rho)", choices=OPTIMIZERS)
    optimizer_param: float = option(
        0.95, "momentum; beta1 for adam; rho for rmsprop/adadelta; unused for adagrad", at_least=0, below=1)
    # Post-2016 training recipe (off by default so the original is reproduced unless asked).
    schedule: str = option(
        "exponential", "learning-rate schedule: exponential decay (the original's), cosine or one-cycle",
        choices=SCHEDULES)
    warmup_epochs: float = option(0.0, "epochs of linear learning-rate warm-up", at_least=0)
    weight_decay: float = option(0.0, "decoupled weight decay (0: off)", at_least=0)
    # tflearn's DNN clipped at 5.0 by default (clip_gradients=5.0), so the 2016 runs had it; without it Model B on
    # raw pixels collapses to one class.
    global_clipnorm: float = option(
        5.0, "rescale each step's gradients to at most this global L2 norm; 0 turns clipping off (5.0 is the 2016 "
        "code's, tflearn's default)", at_least=0)
    label_smoothing: float = option(0.0, "label smoothing of the one-hot targets", at_least=0, below=1)
    mixup_alpha: float = option(0.0, "mixup Beta(alpha, alpha) parameter (0: no mixup)", at_least=0)
    augment: bool = option(False, "random shifts/crops, horizontal flip and small rotations of Training faces")
    random_erasing: float = option(
        0.0, "probability of erasing one random rectangle of a Training face (needs --augment)",
        at_least=0, at_most=1)
    photometric: float = option(
        0.0, "probability P of each real-photo degradation per Training face (data.augment.random_photometric): "
        "detector-box jitter, gamma, contrast/brightness, histogram equalisation (P/4), blur or downscaling, noise, "
        "JPEG re-encoding; raw pixels only; a --teacher sees the undegraded face (0: off)", at_least=0, at_most=1)
    # Baseline `--model svm` (scikit-learn SVC on the standardised feature vector).
    svm_kernel: str = option("rbf", "kernel of the SVM baseline's SVC", choices=SVM_KERNELS)
    svm_c: float = option(1.0, "regularisation strength C of the SVM baseline", above=0)


@dataclass(frozen=True)
class Training:
    """Loop settings."""

    batch_size: int = option(128, "faces per optimizer step (batch size)", at_least=1)
    epochs: int = option(13, "passes over the Training split", at_least=1)
    seed: int = option(0, "random seed: data order, augmentation, initialisation", at_least=0)
    save_model: bool = option(True, "write the best-on-PublicTest model and checkpoints")
    early_stopping_patience: int = option(
        0, "epochs without PublicTest improvement before stopping (0: never)", at_least=0)
    tta: bool = option(False, "flip test-time augmentation at evaluation")
    soft_labels: bool = option(
        False, "fit the FER+ vote distributions (soft_labels.npy from convert_fer2013.py --ferplus), not one-hot")
    init_from: str = option(
        "", "a saved model (.keras) of the same architecture, classes and feature set to start from instead of "
        "random weights: fine-tuning, or a second cosine cycle (warm restart); the schedule starts afresh",
        metavar="MODEL")
    teacher: tuple[str, ...] = option(
        (), "knowledge distillation: saved model(s) (.keras; same classes, the same feature set or raw pixels, any "
        "architecture; or a published Keras 2 .hdf5 peer with FER2013's 7 classes) whose probabilities on each "
        "augmented batch, averaged over the teachers and the mirror image, are mixed into the targets (several: "
        "space- or comma-separated)", metavar="MODEL")
    distill_weight: float = option(
        0.5, "with --teacher: target = (1 - w) * label + w * teacher probabilities", at_least=0, at_most=1)
    teacher_tta: str = option(
        "flip", "with --teacher: the views of each face a teacher averages: flip (the face and its mirror image) or "
        "ten-crop (five 46x46 crops resized to 48x48, and their mirrors; raw-pixel teachers; 5x a teacher's cost)",
        choices=TTA_MODES)


@dataclass(frozen=True)
class VideoPredictor:
    """Live-demo settings (predict_from_video.py)."""

    print_emotions: bool = option(False, "print the probabilities of each prediction")
    camera_source: int = option(0, "index of the webcam to read", at_least=0)
    face_detector: str = option("dlib", "face detector of the live demo", choices=DETECTORS)
    show_confidence: bool = option(True, "draw the probability next to the label")
    time_to_wait_between_predictions: float = option(
        0.5, "seconds between two predictions of the live demo", at_least=0)
    smoothing: float = option(
        0.6, "weight of the previous probabilities in the exponential moving average", at_least=0, below=1)


@dataclass(frozen=True)
class OptimizerSearchSpace:
    """hyperopt ranges (uniform between min and max), as the original's. Each range's bounds must be valid values
    of the Hyperparams field of the same name."""

    learning_rate: tuple[float, float] = option(
        (0.00001, 0.1), "learning rates to search, uniform between MIN and MAX", above=0,
        flag="--learning-rate-range", metavar=("MIN", "MAX"))
    learning_rate_decay: tuple[float, float] = option(
        (0.5, 0.99), "exponential decay factors to search", above=0, at_most=1,
        flag="--learning-rate-decay-range", metavar=("MIN", "MAX"))
    optimizer: tuple[str, ...] = option(
        ("momentum",), "optimizers to choose among (space- or comma-separated)", choices=OPTIMIZERS,
        flag="--optimizers", metavar="NAME")
    optimizer_param: tuple[float, float] = option(
        (0.5, 0.99), "optimizer parameters (momentum, beta1, rho) to search", at_least=0, below=1,
        flag="--optimizer-param-range", metavar=("MIN", "MAX"))
    keep_prob: tuple[float, float] = option(
        (0.7, 0.99), "dropout keep probabilities to search", above=0, at_most=1,
        flag="--keep-prob-range", metavar=("MIN", "MAX"))

    def validate(self) -> None:
        """Raise ConfigError naming the first bad range or optimizer ("search space keep_prob: max 1.5 ...")."""
        for f in dataclasses.fields(self):
            check_value(f, getattr(self, f.name), f"search space {f.name}")
        if not self.optimizer:
            raise ConfigError("search space optimizer: give at least one optimizer")


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

    @staticmethod
    def fields() -> dict[str, tuple[str, dataclasses.Field]]:
        """Every field by name: name -> (section, field), in the table's order."""
        defaults = Config()
        return {f.name: (name, f) for name in _SECTIONS for f in dataclasses.fields(getattr(defaults, name))}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Inverse of to_dict; also accepts a flat dict like ``{"learning_rate": 0.01}``."""
        return cls().with_overrides(data)

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> Config:
        """A config that a run saved with to_dict (checkpoints, model metadata), possibly by an older version.

        A field the saved config lacks was added later: it takes the value that older version trained with
        (``SAVED_BEFORE_FIELD``), not today's default, e.g. no gradient clipping for runs saved before
        ``global_clipnorm`` existed. A field it has that no longer exists (``activation``, ``loss``, ``name`` ...,
        which nothing read) is dropped.
        """
        known = cls.fields()
        filled: dict[str, Any] = {}
        for key, value in data.items():
            if key in _SECTIONS and isinstance(value, dict):
                filled[key] = {k: v for k, v in value.items() if k in known}
            elif key in known:
                filled[key] = value
        for section, fields in SAVED_BEFORE_FIELD.items():
            if isinstance(filled.get(section), dict):
                for name, value in fields.items():
                    filled[section].setdefault(name, value)
        return cls.from_dict(filled)

    def with_overrides(self, overrides: dict[str, Any]) -> Config:
        """Return a copy with fields replaced; keys are field names, optionally nested by section.

        Each value is checked (:func:`check_value`): a wrong type, a null or an out-of-range value raises
        ConfigError naming the key. Unknown keys raise ConfigError listing the valid ones, so a typo in a JSON
        file is not silently ignored.
        """
        flat: dict[str, Any] = {}
        for key, value in overrides.items():
            if key in _SECTIONS and isinstance(value, dict):
                flat.update(value)
            else:
                flat[key] = value
        known = self.fields()
        unknown = sorted(k for k in flat if k not in known)
        if unknown:
            raise ConfigError(f"unknown parameter(s) {unknown}; valid: {sorted(known)}")
        changes: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
        for key, value in flat.items():
            section, f = known[key]
            changes[section][key] = check_value(f, value)
        return Config(**{name: dataclasses.replace(getattr(self, name), **changes[name]) for name in _SECTIONS})

    def validate(self) -> None:
        """Raise ConfigError naming the first bad value (of a config built with dataclasses.replace, say)."""
        for name in _SECTIONS:
            check_all(getattr(self, name))


def load_params_file(path: str | Path) -> dict[str, Any]:
    """Read a ``--params`` JSON file (flat or nested by section; optimize_hyperparams.py writes flat)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such params file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read ({err})") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object of parameter names to values")
    # optimize_hyperparams.py writes {"params": {...}, "public_test_accuracy": ...}; accept both shapes.
    params = data.get("params", data)
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: 'params' must be a JSON object of parameter names to values")
    return params
