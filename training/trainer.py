"""The one training function: ``train(config, data_dir, out_dir)`` (used by train.py and optimize_hyperparams.py).

Protocol (../shared/README.md): fit on Training, validate on PublicTest after every epoch, keep the best-on-PublicTest
model; PrivateTest is never looked at here (inference.evaluation reports it once, at the end). The run directory's
files are listed in training.run; the Keras loop is training.loop, the SVM baseline is fitted here.

Feature vectors are standardised inside the model (``feature_norm`` layer) with mean/variance from Training only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from data.splits import data_checksum, load_split, read_data_meta, resolve_classes
from parameters import FEATURE_SETS, Config
from training.run import (
    CONFIG_FILE,
    SVM_MODEL_FILE,
    TrainingError,
    TrainingRun,
    TrainResult,
    write_history_csv,
    write_json_atomic,
)

__all__ = ["TrainResult", "TrainingError", "train"]


def train(
    config: Config, data_dir: str | Path, out_dir: str | Path, *, resume: bool = False, verbose: int = 1
) -> TrainResult:
    """Train ``config.network.model`` on ``data_dir``'s Training split, select on PublicTest, write ``out_dir``.

    Returns the best PublicTest accuracy and the path of the best model. ``resume`` continues the run in
    ``out_dir`` from its last checkpoint (same model, feature set and classes required), or starts it from epoch 1
    when there is none yet (so a search or table trial can always pass it; train.py's ``--resume`` first checks,
    with ``training.run.require_run``, that the folder holds a run).
    ``verbose``: 0 silent, 1 progress bar and a line per epoch, 2 one line per epoch.
    Raises TrainingError or data.splits.DataError (both errors.UserError) for bad data directories,
    configurations, resume states, and for a run whose loss stops being finite.
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
        from training.teacher import make_teacher

        teacher = make_teacher(config.training.teacher, config, class_names)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / CONFIG_FILE, config.to_dict())  # before the first step: what --resume continues
    run = TrainingRun(config, out_dir, class_names, data_meta, data_checksum(data_meta, train_data), train_data,
                      public, verbose=verbose, teacher=teacher)
    if not keras_model:
        return _train_sklearn(run)
    from training.loop import train_keras

    return train_keras(run, resume=resume)


def _prepare(config: Config, data_dir: Path):
    try:
        config.validate()
    except ValueError as err:  # parameters.Config.validate: a value out of range
        raise TrainingError(str(err)) from None
    from models import available_models, is_keras_model

    if config.network.model not in available_models():
        raise TrainingError(f"unknown model {config.network.model!r}; choose from {available_models()}")
    data_meta = read_data_meta(data_dir)
    class_names = resolve_classes(config, data_meta)
    config = config.with_overrides({"expressions": class_names})
    fs, ds = config.dataset.feature_set, config.dataset
    soft = config.training.soft_labels
    if not is_keras_model(config.network.model) and FEATURE_SETS[fs] == 0:
        raise TrainingError(f"the {config.network.model} model needs a feature vector: choose a landmarks* feature "
                            "set, not 'raw'")
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


TRAIN_ACC_SAMPLE = 4000  # Training faces scored for the SVM's (diagnostic) training accuracy


def _train_sklearn(run: TrainingRun) -> TrainResult:
    """The SVM baseline: one fit on Training features, accuracy on PublicTest, saved with skops (no pickle)."""
    import time

    from models import build_model, hparams_from_config
    from models.io import save_model
    from models.svm import SvmModel

    config, train_data, public = run.config, run.train_data, run.public
    fs = config.dataset.feature_set
    pipeline = build_model(config.network.model, run.n_classes, FEATURE_SETS[fs], **hparams_from_config(config))
    run.log(f"fitting {config.network.model} on {len(train_data.labels)} Training samples ({fs}) ...")
    start = time.perf_counter()
    pipeline.fit(train_data.features, train_data.labels)
    model = SvmModel(pipeline, run.n_classes)
    # An RBF SVM predicts in O(n_support) per sample: scoring all 28k Training faces would cost more than the
    # fit, so the (diagnostic) Training accuracy is measured on a fixed random sample of them.
    sample = np.random.default_rng(config.training.seed).permutation(len(train_data.labels))[:TRAIN_ACC_SAMPLE]
    train_acc = float(np.mean(model.predict(train_data.features[sample]).argmax(1) == train_data.labels[sample]))
    public_acc = float(np.mean(model.predict(public.features).argmax(1) == public.labels))
    run.log(f"fit in {time.perf_counter() - start:.1f} s; PublicTest accuracy {public_acc:.4f}")
    history = {"accuracy": [train_acc], "val_accuracy": [public_acc]}
    metrics = {"public_test_accuracy": public_acc, "training_accuracy": train_acc, "best_epoch": 1}
    path = save_model(model, run.out_dir / SVM_MODEL_FILE, run.metadata(metrics))
    write_history_csv(run.out_dir / "history.csv", history)
    return TrainResult(public_acc, path, history, best_epoch=1, epochs_run=1, run_dir=run.out_dir)
