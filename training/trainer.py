"""The one training function: ``train(config, data_dir, out_dir)`` (used by train.py and optimize_hyperparams.py).

Protocol (../shared/README.md): fit on Training, validate on PublicTest after every epoch, keep the best-on-PublicTest
model; PrivateTest is never looked at here (inference.evaluation reports it once, at the end).

A run directory holds::

    model.keras, model.meta.json   best-on-PublicTest model + metadata (models.io; SVM: model.joblib)
    checkpoints/last.keras         the latest epoch's model with its optimizer state (for --resume)
    checkpoints/state.json         epochs done, best accuracy/epoch, early-stopping counter, history, config
    history.csv                    one row per epoch: loss, accuracy, val_loss, val_accuracy, lr
    learning_curves.png            loss and accuracy per epoch
    logs/                          TensorBoard
    config.json                    the full configuration of the run

Feature vectors are standardised inside the model (``feature_norm`` layer) with mean/variance from Training only.
Batches come from a Python generator indexed by (seed, epoch, batch), so a run is reproducible with its seed and
``resume`` continues with the data order the uninterrupted run would have used.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parameters import EMOTIONS, FEATURE_SETS, Config

MODEL_FILE = "model.keras"
SVM_MODEL_FILE = "model.joblib"
STATE_VERSION = 1
NORMALISATION_TEXT = (
    "image: grey levels 0..255 float32, rescaled by 1/255 inside the model; features: raw values, standardised "
    "inside the model by the feature_norm Normalization layer (mean/variance of the Training split; mean 0 and "
    "variance 1, i.e. raw values, when trained with --no-standardize-features)"
)


class TrainingError(ValueError):
    """Bad data directory, incompatible resume state or configuration."""


@dataclass(frozen=True)
class TrainResult:
    """What ``train`` returns."""

    best_public_accuracy: float  # best PublicTest accuracy over the epochs (the selection criterion)
    model_path: Path  # RUN_DIR/model.keras (RUN_DIR/model.joblib for the svm): the best-on-PublicTest model
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch loss, accuracy, val_*, lr
    best_epoch: int = 0  # 1-based epoch of the best model
    epochs_run: int = 0  # epochs completed in total (including those before a resume)
    train_seconds: float = 0.0  # wall time of those epochs (validation included), summed over resumes
    stopped_early: bool = False
    run_dir: Path | None = None


# --------------------------------------------------------------------------------------------------- data


@dataclass
class SplitData:
    """One split: images (n, 48, 48) uint8, labels (n,) int64, features (n, d) float32 or None, and with
    ``soft_labels`` the (n, k) float32 FER+ vote distributions."""

    images: np.ndarray
    labels: np.ndarray
    features: np.ndarray | None
    soft_labels: np.ndarray | None = None


def read_data_meta(data_dir: str | Path) -> dict[str, Any]:
    """``DIR/meta.json`` of a converted directory (data.dataset.read_meta; TrainingError when absent/bad)."""
    from data.dataset import read_meta

    try:
        return read_meta(Path(data_dir))
    except FileNotFoundError as err:
        raise TrainingError(str(err)) from err


def load_soft_labels(data_dir: str | Path, split: str, n: int, n_classes: int) -> np.ndarray:
    """``DIR/<split>/soft_labels.npy`` (n, k) float32, checked; TrainingError saying how to make it when absent."""
    path = Path(data_dir) / split / "soft_labels.npy"
    if not path.is_file():
        raise TrainingError(
            f"{path} is missing: soft labels (--soft-labels) are the FER+ vote distributions; convert with "
            "convert_fer2013.py --ferplus PATH/fer2013new.csv (soft labels are written by default)"
        )
    soft = np.load(path).astype(np.float32, copy=False)
    if soft.shape != (n, n_classes):
        raise TrainingError(f"{path}: shape {soft.shape}, expected ({n}, {n_classes}): faces x classes")
    if not np.allclose(soft.sum(axis=1), 1.0, atol=1e-4) or soft.min() < 0:
        raise TrainingError(f"{path}: rows must be probability distributions (>= 0, summing to 1)")
    return soft


def load_split(
    data_dir: str | Path,
    split: str,
    feature_set: str,
    *,
    limit: int = -1,
    n_classes: int | None = None,
    soft_labels: bool = False,
) -> SplitData:
    """Load one split of a converted directory; ``limit`` >= 0 keeps the first rows (trunc_*set_to);
    ``soft_labels`` also loads ``soft_labels.npy`` (needs ``n_classes``)."""
    from data.dataset import load_converted

    data_dir = Path(data_dir)
    try:
        images, labels, features = load_converted(data_dir, split, feature_set)
    except FileNotFoundError as err:
        raise TrainingError(str(err)) from err
    data = SplitData(np.asarray(images), np.asarray(labels, dtype=np.int64), features)
    if data.images.ndim != 3:
        raise TrainingError(f"{data_dir / split}/images.npy: expected (n, h, w), got {data.images.shape}")
    expected_dim = FEATURE_SETS[feature_set]
    if data.features is not None and data.features.shape[1] != expected_dim:
        raise TrainingError(
            f"{data_dir / split}: {feature_set!r} features have {data.features.shape[1]} columns, "
            f"expected {expected_dim}"
        )
    if n_classes is not None and len(data.labels) and (data.labels.min() < 0 or data.labels.max() >= n_classes):
        raise TrainingError(f"{data_dir / split}/labels.npy: labels outside 0..{n_classes - 1}")
    if soft_labels:
        if n_classes is None:
            raise ValueError("load_split(soft_labels=True) needs n_classes")
        data.soft_labels = load_soft_labels(data_dir, split, len(data.labels), n_classes)
    if limit >= 0:
        features = None if data.features is None else data.features[:limit]
        soft = None if data.soft_labels is None else data.soft_labels[:limit]
        data = SplitData(data.images[:limit], data.labels[:limit], features, soft)
    if len(data.labels) == 0:
        raise TrainingError(f"{data_dir / split}: no samples")
    return data


def resolve_classes(config: Config, data_meta: dict[str, Any]) -> list[str]:
    """The class names to train on: the data's. Config's ``expressions`` must match unless left at the default."""
    class_names = list(data_meta.get("class_names") or [])
    if not class_names:
        raise TrainingError("meta.json has no class_names")
    wanted = list(config.dataset.expressions)
    if wanted != class_names and tuple(wanted) != EMOTIONS:
        raise TrainingError(f"config expressions {wanted} disagree with the data's classes {class_names}")
    return class_names


def data_checksum(data_meta: dict[str, Any], train: SplitData) -> str:
    """sha256 of the source csv (from meta.json) when known, else of the Training arrays used."""
    if data_meta.get("source_sha256"):
        return str(data_meta["source_sha256"])
    digest = hashlib.sha256()
    for array in (train.images, train.labels, train.features):
        if array is not None:
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def model_inputs(images: np.ndarray, features: np.ndarray | None):
    """(n, 48, 48) grey images [+ (n, d) features] -> the model's inputs: ``images[..., None]`` float32 or a list."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        x = x[..., None]
    return x if features is None else [x, np.asarray(features, dtype=np.float32)]


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and variance of Training features; constant columns get variance 1 (not 1e-14)."""
    features = np.asarray(features, dtype=np.float64)
    mean, variance = features.mean(axis=0), features.var(axis=0)
    variance[variance < 1e-12] = 1.0
    return mean.astype(np.float32), variance.astype(np.float32)


def set_feature_statistics(model, mean: np.ndarray, variance: np.ndarray) -> None:
    """Store Training statistics in the model's ``feature_norm`` layer (call before the first compiled call)."""
    layer = model.get_layer("feature_norm")
    layer.adapt_mean.assign(mean)
    layer.adapt_variance.assign(variance)
    layer.finalize_state()


# --------------------------------------------------------------------------------------------------- batches


def augmented_features(feature_set: str, images: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray | None:
    """The feature vectors of augmented faces: the landmarks moved with the image (``random_affine``) and the HOG
    parts recomputed from the augmented images (data.hog, vectorised), so features and pixels
    always describe the same picture."""
    from data.features import FEATURE_PARTS, assemble_features
    from data.hog import hog_features

    parts = FEATURE_PARTS[feature_set]
    if not parts:
        return None
    hog = {}
    if "hog_plain" in parts or "hog_windows" in parts:
        hog = hog_features(images, plain="hog_plain" in parts, windows="hog_windows" in parts)
    return assemble_features(feature_set, landmarks=landmarks, **hog)


def batch_generator(
    train: SplitData,
    n_classes: int,
    config: Config,
    *,
    initial_epoch: int = 0,
    teacher=None,
):
    """Yield ``(inputs, one_hot_targets)`` batches for epochs ``initial_epoch..epochs-1``, epoch after epoch.

    Batch ``b`` of epoch ``e`` depends only on (seed, e, b): the order is the permutation drawn by
    ``default_rng([seed, e])`` and the augmentation draws from ``default_rng([seed, e, b])``.
    With ``augment``, every feature set gets the geometric augmentation: landmarks follow the warp and HOG is
    recomputed from the augmented (and erased) images.
    ``teacher`` (``(images, features) -> probabilities``, see :func:`make_teacher`): the targets become
    ``(1 - distill_weight) * targets + distill_weight * teacher(batch)`` (knowledge distillation at temperature 1).
    """
    from data.augment import mixup, random_affine, random_erasing, random_photometric

    hp, tr = config.hyperparams, config.training
    n, batch_size = len(train.labels), tr.batch_size
    steps = math.ceil(n / batch_size)
    eye = np.eye(n_classes, dtype=np.float32)
    feature_set = config.dataset.feature_set
    for epoch in range(initial_epoch, tr.epochs):
        order = np.random.default_rng([tr.seed, epoch]).permutation(n)
        for b in range(steps):
            index = np.sort(order[b * batch_size : (b + 1) * batch_size])  # sorted: faster gathers
            rng = np.random.default_rng([tr.seed, epoch, b])
            images = train.images[index].astype(np.float32)
            features = None if train.features is None else train.features[index]
            # FER+ vote distributions (cross-entropy against soft targets) or one-hot majority labels
            targets = train.soft_labels[index] if train.soft_labels is not None else eye[train.labels[index]]
            if hp.augment:
                # every non-raw feature set starts with the 68 (x, y) landmarks
                landmarks = None if features is None else features[:, : FEATURE_SETS["landmarks"]].reshape(-1, 68, 2)
                images, landmarks = random_affine(images, rng, landmarks)
                if hp.random_erasing > 0:
                    images = random_erasing(images, rng, hp.random_erasing)
                if features is not None:
                    features = augmented_features(feature_set, images, landmarks)
            clean = images  # what a teacher sees: the face before the real-photo degradations
            if hp.photometric > 0:
                images = random_photometric(images, rng, hp.photometric)
            if hp.mixup_alpha > 0:
                (images, features, clean), targets = mixup([images, features, clean], targets, rng, hp.mixup_alpha)
            if teacher is not None:
                weight = config.training.distill_weight
                targets = (1.0 - weight) * targets + weight * teacher(clean, features)
            inputs = model_inputs(images, features)
            yield (tuple(inputs) if isinstance(inputs, list) else inputs), targets  # tf.data wants tuples


def make_teacher(paths: str, config: Config, class_names: list[str]):
    """Load the comma-separated saved models ``paths`` as one teacher ``(images, features) -> (n, k) float32``: the
    mean of their probabilities, each averaged with the mirror image's (landmarks mirrored, HOG recomputed).
    A teacher sees the student's feature set, or only the pixels when it is a ``raw`` model (so a pixel model can
    teach a landmark/HOG model). TrainingError when a teacher cannot be loaded or does not fit."""
    import tensorflow as tf

    from data.augment import flip_features, flip_images
    from inference.evaluation import tta_supported
    from models.io import load_model

    fs = config.dataset.feature_set
    teachers = []
    for path in [p.strip() for p in paths.split(",") if p.strip()]:
        try:
            model, meta = load_model(path)
        except (OSError, ValueError) as err:
            raise TrainingError(f"--teacher {path}: {err}") from None
        if not hasattr(model, "layers"):
            raise TrainingError(f"--teacher {path}: not a Keras model")
        theirs = list(meta.get("class_names") or [])
        if theirs != class_names:
            raise TrainingError(f"--teacher {path}: it has classes {theirs}, not {class_names}")
        if meta.get("feature_set") not in ("raw", fs):
            raise TrainingError(f"--teacher {path}: it has feature_set {meta.get('feature_set')}, not raw or {fs}")
        function = tf.function(lambda x, m=model: m(x, training=False), reduce_retracing=True)
        teachers.append((function, meta["feature_set"]))
    if not teachers:
        raise TrainingError("--teacher: no model path given")

    def teacher(images: np.ndarray, features: np.ndarray | None) -> np.ndarray:
        outputs = []
        for function, teacher_fs in teachers:
            feats = None if teacher_fs == "raw" else features
            outputs.append(np.asarray(function(model_inputs(images, feats))))
            if tta_supported(teacher_fs):
                flipped = flip_images(images)
                mirrored = None if feats is None else flip_features(feats, teacher_fs, images.shape[2], flipped)
                outputs.append(np.asarray(function(model_inputs(flipped, mirrored))))
        return np.mean(outputs, axis=0, dtype=np.float32)

    return teacher


# --------------------------------------------------------------------------------------------------- optimizer


def make_schedule(config: Config, steps_per_epoch: int):
    """Learning-rate schedule: tflearn's continuous exponential decay, cosine or one-cycle (both with warmup)."""
    import keras

    hp = config.hyperparams
    total = max(1, config.training.epochs * steps_per_epoch)
    warmup = int(round(hp.warmup_epochs * steps_per_epoch))
    if hp.schedule == "exponential":
        if warmup:
            warnings.warn("warmup_epochs applies to the cosine and onecycle schedules only; ignored", stacklevel=2)
        # lr * decay_rate ** (step / decay_step): tflearn's Momentum(lr_decay, decay_step, staircase=False).
        return keras.optimizers.schedules.ExponentialDecay(
            hp.learning_rate, decay_steps=hp.decay_step, decay_rate=hp.learning_rate_decay, staircase=False
        )
    if hp.schedule == "cosine":
        warmup = min(warmup, total - 1)
        if warmup == 0:
            return keras.optimizers.schedules.CosineDecay(hp.learning_rate, decay_steps=total)
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=total - warmup, warmup_target=hp.learning_rate, warmup_steps=warmup
        )
    # onecycle (Smith 2018, cosine annealing form): linear ramp from lr/25 to lr over max(warmup, 30 %) of the
    # steps, then cosine down to lr/1e4.
    warmup = min(max(warmup, int(0.3 * total)), total - 1)
    return keras.optimizers.schedules.CosineDecay(
        hp.learning_rate / 25.0,
        decay_steps=max(1, total - warmup),
        alpha=1e-4,
        warmup_target=hp.learning_rate,
        warmup_steps=warmup,
    )


def make_optimizer(config: Config, steps_per_epoch: int):
    """The original's optimizers: momentum (SGD), adam (beta_1), rmsprop (rho), adagrad, adadelta (rho)."""
    import keras

    hp = config.hyperparams
    lr = make_schedule(config, steps_per_epoch)
    common: dict[str, Any] = {"learning_rate": lr}
    if hp.weight_decay > 0:
        common["weight_decay"] = hp.weight_decay  # decoupled (AdamW-style) decay
    if hp.global_clipnorm > 0:
        common["global_clipnorm"] = hp.global_clipnorm
    p = hp.optimizer_param
    optimizer = {
        "momentum": lambda: keras.optimizers.SGD(momentum=p, **common),
        "adam": lambda: keras.optimizers.Adam(beta_1=p, **common),
        "rmsprop": lambda: keras.optimizers.RMSprop(rho=p, **common),
        "adagrad": lambda: keras.optimizers.Adagrad(**common),
        "adadelta": lambda: keras.optimizers.Adadelta(rho=p, **common),
    }[hp.optimizer]()
    if hp.weight_decay > 0:  # no decay on biases and batch-norm scales/offsets
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


# --------------------------------------------------------------------------------------------------- run files


def _write_history_csv(path: Path, history: dict[str, list[float]]) -> None:
    keys = list(history)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", *keys])
        for i in range(len(history[keys[0]]) if keys else 0):
            writer.writerow([i + 1, *(history[k][i] for k in keys)])


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


# --------------------------------------------------------------------------------------------------- train


def _prepare(config: Config, data_dir: Path):
    config.validate()
    from models import available_models, is_keras_model

    if config.network.model not in available_models():
        raise TrainingError(f"unknown model {config.network.model!r}; choose from {available_models()}")
    data_meta = read_data_meta(data_dir)
    class_names = resolve_classes(config, data_meta)
    config = config.with_overrides({"expressions": class_names, "output_size": len(class_names)})
    fs, ds = config.dataset.feature_set, config.dataset
    soft = config.training.soft_labels
    if soft and not is_keras_model(config.network.model):
        raise TrainingError(f"--soft-labels needs a Keras model, not {config.network.model!r}")
    train_data = load_split(
        data_dir, "Training", fs, limit=ds.trunc_trainset_to, n_classes=len(class_names), soft_labels=soft
    )
    public = load_split(data_dir, "PublicTest", fs, limit=ds.trunc_validationset_to, n_classes=len(class_names))
    size = config.network.input_size
    if train_data.images.shape[1:] != (size, size):
        raise TrainingError(f"images are {train_data.images.shape[1:]}, the network expects ({size}, {size})")
    return config, data_meta, class_names, train_data, public


def train(
    config: Config, data_dir: str | Path, out_dir: str | Path, *, resume: bool = False, verbose: int = 1
) -> TrainResult:
    """Train ``config.network.model`` on ``data_dir``'s Training split, select on PublicTest, write ``out_dir``.

    Returns the best PublicTest accuracy and the path of the best model. ``resume`` continues from
    ``out_dir/checkpoints`` (same model, feature set and classes required; a missing checkpoint starts afresh).
    ``verbose``: 0 silent, 1 progress bar and a line per epoch, 2 one line per epoch.
    Raises TrainingError (a ValueError) for bad data directories, configurations or resume states.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if config.hyperparams.photometric > 0 and config.dataset.feature_set != "raw":  # landmarks/HOG would not follow
        raise TrainingError(f"--photometric needs --features raw, not {config.dataset.feature_set}")
    config, data_meta, class_names, train_data, public = _prepare(config, data_dir)
    from models import is_keras_model

    keras_model, teacher = is_keras_model(config.network.model), None
    if config.training.teacher:  # checked before anything is written
        if not keras_model:
            raise TrainingError(f"--teacher needs a Keras model, not {config.network.model!r}")
        teacher = make_teacher(config.training.teacher, config, class_names)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=1) + "\n")
    checksum = data_checksum(data_meta, train_data)
    if not keras_model:
        return _train_sklearn(config, out_dir, class_names, data_meta, checksum, train_data, public, verbose)
    return _train_keras(
        config, out_dir, class_names, data_meta, checksum, train_data, public, resume, verbose, teacher
    )


def _log(verbose: int, message: str) -> None:
    if verbose:
        print(message, flush=True)


TRAIN_ACC_SAMPLE = 4000  # Training faces scored for the SVM's (diagnostic) training accuracy


def _train_sklearn(config, out_dir, class_names, data_meta, checksum, train_data, public, verbose) -> TrainResult:
    """The SVM baseline: one fit on Training features, accuracy on PublicTest, saved with joblib."""
    import time

    from models import build_model, hparams_from_config
    from models.io import save_model
    from models.svm import SvmModel

    n_classes, fs = len(class_names), config.dataset.feature_set
    pipeline = build_model(config.network.model, n_classes, FEATURE_SETS[fs], **hparams_from_config(config))
    _log(verbose, f"fitting {config.network.model} on {len(train_data.labels)} Training samples ({fs}) ...")
    start = time.perf_counter()
    pipeline.fit(train_data.features, train_data.labels)
    model = SvmModel(pipeline, n_classes)
    # An RBF SVM predicts in O(n_support) per sample: scoring all 28k Training faces would cost more than the
    # fit, so the (diagnostic) Training accuracy is measured on a fixed random sample of them.
    sample = np.random.default_rng(config.training.seed).permutation(len(train_data.labels))[:TRAIN_ACC_SAMPLE]
    train_acc = float(np.mean(model.predict(train_data.features[sample]).argmax(1) == train_data.labels[sample]))
    public_acc = float(np.mean(model.predict(public.features).argmax(1) == public.labels))
    _log(verbose, f"fit in {time.perf_counter() - start:.1f} s; PublicTest accuracy {public_acc:.4f}")
    history = {"accuracy": [train_acc], "val_accuracy": [public_acc]}
    metrics = {"public_test_accuracy": public_acc, "training_accuracy": train_acc, "best_epoch": 1}
    path = save_model(
        model, out_dir / SVM_MODEL_FILE, build_metadata(config, class_names, data_meta, checksum, metrics)
    )
    _write_history_csv(out_dir / "history.csv", history)
    return TrainResult(public_acc, path, history, best_epoch=1, epochs_run=1, run_dir=out_dir)


def _seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    # Deterministic kernels; on CPU this costs little (see benchmarks/bench_train.py).
    tf.config.experimental.enable_op_determinism()


def _check_same_task(
    prefix: str, theirs: tuple[str, str, list[str]], config: Config, class_names: list[str]
) -> None:
    """TrainingError ``"{prefix} {what} {theirs}, not {ours}"`` when (model, feature set, classes) differ."""
    ours = (config.network.model, config.dataset.feature_set, class_names)
    for what, old, new in zip(("model", "feature_set", "classes"), theirs, ours, strict=True):
        if old != new:
            raise TrainingError(f"{prefix} {what} {old}, not {new}")


def _read_state(out_dir: str | Path) -> tuple[dict[str, Any], Config] | None:
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
    """The config of the interrupted run in ``out_dir`` (what ``--resume`` continues), None without checkpoints."""
    found = _read_state(out_dir)
    return found[1] if found else None


def _load_state(out_dir: Path, config: Config, class_names: list[str]) -> dict[str, Any] | None:
    found = _read_state(out_dir)
    if found is None:
        return None
    state, saved = found
    _check_same_task(
        f"cannot resume {out_dir}: it was trained with",
        (saved.network.model, saved.dataset.feature_set, list(saved.dataset.expressions)), config, class_names,
    )
    return state


def _seed_generators(model) -> list:
    """The random-state holders of the model's layers (Dropout), in layer order."""
    return [layer.seed_generator for layer in model.layers if getattr(layer, "seed_generator", None) is not None]


def _scalar_logger(log_dir: Path):
    """A callback writing per-epoch TensorBoard scalars to ``log_dir/{train,validation}``.

    Keras's TensorBoard callback needs the ``tensorboard`` package; ``tf.summary.write`` with the scalars plugin's
    metadata is core TensorFlow and gives TensorBoard the same epoch_* curves.
    """
    import keras
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"

    class ScalarLogger(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.writers = {}

        def _writer(self, name):
            if name not in self.writers:
                self.writers[name] = tf.summary.create_file_writer(str(log_dir / name))
            return self.writers[name]

        def on_epoch_end(self, epoch, logs=None):
            for key, value in (logs or {}).items():
                name, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
                with self._writer(name).as_default():
                    tf.summary.write(f"epoch_{tag}", tf.constant(float(value)), step=epoch, metadata=metadata)
            for writer in self.writers.values():
                writer.flush()

        def on_train_end(self, logs=None):
            for writer in self.writers.values():
                writer.close()

    return ScalarLogger()


def _init_weights(model, path: str, config: Config, class_names: list[str]) -> None:
    """Copy the weights of the saved model ``path`` into ``model`` (TrainingError naming what differs)."""
    from models.io import load_model

    source, meta = load_model(path)
    theirs = (meta.get("model_name"), meta.get("feature_set"), list(meta.get("class_names") or []))
    _check_same_task(f"--init-from {path}: it has", theirs, config, class_names)
    weights = source.get_weights()
    if [w.shape for w in weights] != [w.shape for w in model.get_weights()]:
        raise TrainingError(
            f"--init-from {path}: its weights do not fit this network (other width or batch-norm options?)"
        )
    model.set_weights(weights)


def _train_keras(config, out_dir, class_names, data_meta, checksum, train_data, public, resume, verbose, teacher=None):
    import keras

    from models import build_model, hparams_from_config
    from models.io import refresh_normalization, save_model

    tr, fs = config.training, config.dataset.feature_set
    n_classes, feature_dim = len(class_names), FEATURE_SETS[fs]
    ckpt_dir = out_dir / "checkpoints"
    state = _load_state(out_dir, config, class_names) if resume else None
    if resume and state is None:
        _log(verbose, f"no checkpoint in {ckpt_dir}: starting a new run")
    _seed_everything(tr.seed)

    model = build_model(config.network.model, n_classes, feature_dim, **hparams_from_config(config))
    best_model = build_model(config.network.model, n_classes, feature_dim, **hparams_from_config(config))
    if state is None and tr.init_from:
        _init_weights(model, tr.init_from, config, class_names)
        _log(verbose, f"starting from the weights of {tr.init_from}")
    if feature_dim:  # this run's Training statistics (also over those an --init-from model carried)
        mean, variance = feature_statistics(train_data.features)
        if not config.network.standardize_features:  # the 2016 code's raw feature values
            mean, variance = np.zeros_like(mean), np.ones_like(variance)
        set_feature_statistics(model, mean, variance)
    steps = math.ceil(len(train_data.labels) / tr.batch_size)
    model.compile(
        optimizer=make_optimizer(config, steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.hyperparams.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    initial_epoch = 0
    if state is not None:
        model.optimizer.build(model.trainable_variables)
        model.load_weights(ckpt_dir / "last.keras")  # weights and optimizer state (iterations included)
        refresh_normalization(model)
        for generator, value in zip(_seed_generators(model), state.get("seed_states", []), strict=False):
            generator.state.assign(np.asarray(value, dtype=generator.state.dtype))
        initial_epoch = int(state["epoch"])
        _log(verbose, f"resuming {out_dir} after epoch {initial_epoch} (best PublicTest {state['best']:.4f})")
    else:
        state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "wait": 0, "history": {}, "stopped_early": False}
    state.setdefault("train_seconds", 0.0)  # absent in checkpoints written before it was recorded
    state.update(version=STATE_VERSION, config=config.to_dict())

    if config.hyperparams.random_erasing > 0 and not config.hyperparams.augment:
        warnings.warn("random_erasing needs augment; ignored", stacklevel=2)

    def save_best(epoch: int, accuracy: float) -> None:
        best_model.set_weights(model.get_weights())
        metrics = {"public_test_accuracy": accuracy, "best_epoch": epoch}
        save_model(best_model, out_dir / MODEL_FILE, build_metadata(config, class_names, data_meta, checksum, metrics))

    class Keeper(keras.callbacks.Callback):
        """Per epoch: history, best model, checkpoint + state, early stopping, the PublicTest line."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            state["train_seconds"] += time.perf_counter() - self.epoch_start
            logs = dict(logs or {})
            logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            for key, value in logs.items():
                state["history"].setdefault(key, []).append(float(value))
            accuracy = float(logs["val_accuracy"])
            improved = accuracy > state["best"]
            if improved:
                state.update(best=accuracy, best_epoch=epoch + 1, wait=0)
                if tr.save_model:
                    save_best(epoch + 1, accuracy)
            else:
                state["wait"] += 1
            patience = tr.early_stopping_patience
            if patience and state["wait"] >= patience:
                self.model.stop_training = True
                state["stopped_early"] = True
            state["epoch"] = epoch + 1
            # Dropout's random state is not part of the .keras weights; keep it so a resume continues exactly.
            state["seed_states"] = [g.state.numpy().tolist() for g in _seed_generators(self.model)]
            if tr.save_model:  # off (e.g. for hyperparameter trials): no model.keras, no checkpoint, no resume
                ckpt_dir.mkdir(parents=True, exist_ok=True)
                tmp = ckpt_dir / ".last.partial.keras"
                self.model.save(tmp)
                tmp.replace(ckpt_dir / "last.keras")
                (ckpt_dir / "state.json").write_text(json.dumps(state, indent=1) + "\n")
            _write_history_csv(out_dir / "history.csv", state["history"])
            _log(
                verbose,
                f"epoch {epoch + 1}/{tr.epochs}: PublicTest accuracy {accuracy:.4f}"
                f"{' (best)' if improved else ''}; best {state['best']:.4f} at epoch {state['best_epoch']}"
                + (f"; no improvement for {patience} epochs: stopping" if state["stopped_early"] else ""),
            )

    remaining = tr.epochs - initial_epoch
    if remaining > 0 and not state["stopped_early"]:
        if teacher is not None:
            _log(verbose, f"distilling from {tr.teacher} (weight {tr.distill_weight})")
        val_x = model_inputs(public.images, public.features)
        val_y = np.eye(n_classes, dtype=np.float32)[public.labels]
        callbacks = [Keeper(), _scalar_logger(out_dir / "logs")]
        model.fit(
            batch_generator(train_data, n_classes, config, initial_epoch=initial_epoch, teacher=teacher),
            steps_per_epoch=steps,
            epochs=tr.epochs,
            initial_epoch=initial_epoch,
            validation_data=(val_x, val_y),
            validation_batch_size=256,
            callbacks=callbacks,
            verbose=verbose,
            shuffle=False,  # the generator shuffles, reproducibly
        )
    history = state["history"]
    if history:
        plot_learning_curves(history, out_dir / "learning_curves.png", f"model {config.network.model}, {fs}")
    return TrainResult(
        best_public_accuracy=float(state["best"]),
        model_path=out_dir / MODEL_FILE,
        history=history,
        best_epoch=int(state["best_epoch"]),
        epochs_run=int(state["epoch"]),
        train_seconds=float(state["train_seconds"]),
        stopped_early=bool(state["stopped_early"]),
        run_dir=out_dir,
    )
