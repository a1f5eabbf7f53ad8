"""The Keras training loop: build and compile the model, restore a checkpoint, fit with :class:`EpochKeeper`.

Batches come from ``data.batches.batch_generator``, indexed by (seed, epoch, batch), and the checkpoint carries the
optimizer state and Dropout's random state, so a resumed run continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from data.batches import batch_generator
from data.splits import feature_statistics, model_inputs
from parameters import Config
from training.run import (
    MODEL_FILE,
    STATE_VERSION,
    TrainingError,
    TrainingRun,
    TrainResult,
    check_same_task,
    plot_learning_curves,
    read_state,
)


def set_feature_statistics(model, mean: np.ndarray, variance: np.ndarray) -> None:
    """Store Training statistics in the model's ``feature_norm`` layer (call before the first compiled call)."""
    layer = model.get_layer("feature_norm")
    layer.adapt_mean.assign(mean)
    layer.adapt_variance.assign(variance)
    layer.finalize_state()


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and the Keras backend; under TensorFlow also choose deterministic kernels (on CPU this
    costs little, see benchmarks/bench_train.py). JAX and torch keep their own (GPU) kernel choices."""
    import keras

    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def init_weights(model, path: str, config: Config, class_names: list[str]) -> None:
    """Copy the weights of the saved model ``path`` into ``model`` (TrainingError naming what differs)."""
    from models.io import load_model

    source, meta = load_model(path)
    theirs = (meta.get("model_name"), meta.get("feature_set"), list(meta.get("class_names") or []))
    check_same_task(f"--init-from {path}: it has", theirs, config, class_names)
    weights = source.get_weights()
    if [w.shape for w in weights] == [w.shape for w in model.get_weights()]:
        model.set_weights(weights)
        return
    theirs_net = (meta.get("config") or {}).get("network") or {}
    theirs_blocks = theirs_net.get("last_stage_blocks", 2)
    if config.network.model == "fernet" and theirs_blocks < config.network.last_stage_blocks:
        from models import hparams_from_config
        from models.fernet import grow_fernet

        feature_dim = int(model.inputs[1].shape[-1]) if len(model.inputs) > 1 else 0
        try:
            grow_fernet(model, weights, theirs_blocks, len(class_names), feature_dim, **hparams_from_config(config))
        except ValueError as err:
            raise TrainingError(f"--init-from {path}: {err} (other width or batch-norm options?)") from None
        return
    hint = ""
    if config.network.model == "fernet" and "width" in theirs_net:  # name the flags that would fit
        hint = f"; it is a fernet of --width {theirs_net['width']} --last-stage-blocks {theirs_blocks}"
    raise TrainingError(
        f"--init-from {path}: its weights do not fit this network (other width, last-stage blocks or batch-norm "
        f"options?){hint}"
    )


def load_checkpoint_state(out_dir: Path, config: Config, class_names: list[str]) -> dict[str, Any] | None:
    """``checkpoints/state.json`` of the run in ``out_dir`` when it trains the same task; None without one."""
    found = read_state(out_dir)
    if found is None:
        return None
    state, saved = found
    check_same_task(
        f"cannot resume {out_dir}: it was trained with",
        (saved.network.model, saved.dataset.feature_set, list(saved.dataset.expressions)), config, class_names,
    )
    return state


def _restore(model, run: TrainingRun, state: dict[str, Any]) -> int:
    """Load ``checkpoints/last.keras`` (weights and optimizer state) and Dropout's random state; the epochs done."""
    from models.io import refresh_normalization
    from training.callbacks import seed_generators

    model.optimizer.build(model.trainable_variables)
    model.load_weights(run.checkpoint_dir / "last.keras")  # weights and optimizer state (iterations included)
    refresh_normalization(model)
    for generator, value in zip(seed_generators(model), state.get("seed_states", []), strict=False):
        generator.state.assign(np.asarray(value, dtype=generator.state.dtype))
    return int(state["epoch"])


def train_keras(run: TrainingRun, *, resume: bool = False) -> TrainResult:
    """Fit ``run.config.network.model`` epoch by epoch; ``resume`` continues from ``run.out_dir/checkpoints``."""
    import keras

    from models import build_model, hparams_from_config
    from training.callbacks import EpochKeeper, ScalarLogger
    from training.optim import make_optimizer

    config, tr = run.config, run.config.training
    state = load_checkpoint_state(run.out_dir, config, run.class_names) if resume else None
    if resume and state is None:
        run.log(f"no checkpoint in {run.checkpoint_dir} yet: starting the run from epoch 1 with its saved config")
    seed_everything(tr.seed)

    def build():
        return build_model(config.network.model, run.n_classes, run.feature_dim, **hparams_from_config(config))

    model, best_model = build(), build()
    if state is None and tr.init_from:
        init_weights(model, tr.init_from, config, run.class_names)
        run.log(f"starting from the weights of {tr.init_from}")
    if run.feature_dim:  # this run's Training statistics (also over those an --init-from model carried)
        mean, variance = feature_statistics(run.train_data.features)
        if not config.network.standardize_features:  # the 2016 code's raw feature values
            mean, variance = np.zeros_like(mean), np.ones_like(variance)
        set_feature_statistics(model, mean, variance)
    steps = math.ceil(len(run.train_data.labels) / tr.batch_size)
    model.compile(
        optimizer=make_optimizer(config, steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.hyperparams.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    initial_epoch = 0
    if state is not None:
        initial_epoch = _restore(model, run, state)
        run.log(f"resuming {run.out_dir} after epoch {initial_epoch} (best PublicTest {state['best']:.4f})")
    else:
        state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "wait": 0, "history": {}, "stopped_early": False}
    state.setdefault("train_seconds", 0.0)  # absent in checkpoints written before it was recorded
    state.update(version=STATE_VERSION, config=config.to_dict())

    if config.hyperparams.random_erasing > 0 and not config.hyperparams.augment:
        warnings.warn("random_erasing needs augment; ignored", stacklevel=2)

    keeper = EpochKeeper(run, state, best_model)
    scalar_logger = [ScalarLogger(run.out_dir / "logs")] if keras.backend.backend() == "tensorflow" else []
    if not scalar_logger and tr.epochs > initial_epoch:
        run.log(f"Keras backend {keras.backend.backend()}: no TensorBoard logs (they are written through TensorFlow); "
                "history.csv and learning_curves.png hold the same curves")
    if tr.epochs > initial_epoch and not state["stopped_early"]:
        if run.teacher is not None:
            run.log(f"distilling from {', '.join(tr.teacher)} (weight {tr.distill_weight}, {tr.teacher_tta} views)")
        model.fit(
            batch_generator(run.train_data, run.n_classes, config, initial_epoch=initial_epoch, teacher=run.teacher),
            steps_per_epoch=steps,
            epochs=tr.epochs,
            initial_epoch=initial_epoch,
            validation_data=(model_inputs(run.public.images, run.public.features),
                             np.eye(run.n_classes, dtype=np.float32)[run.public.labels]),
            validation_batch_size=256,
            callbacks=[keeper] + scalar_logger,
            verbose=run.verbose,
            shuffle=False,  # the generator shuffles, reproducibly
        )
    history = state["history"]
    if history:
        plot_learning_curves(history, run.out_dir / "learning_curves.png",
                             f"model {config.network.model}, {config.dataset.feature_set}")
    if keeper.diverged:
        kept = f"; {MODEL_FILE} holds epoch {state['best_epoch']}" if state["best_epoch"] else ""
        raise TrainingError(
            f"training diverged ({keeper.diverged}, learning rate {config.hyperparams.learning_rate}): stopped, "
            f"nothing non-finite was saved{kept}; lower --learning-rate or keep --global-clipnorm on"
        )
    return TrainResult(
        best_public_accuracy=float(state["best"]),
        model_path=run.out_dir / MODEL_FILE,
        history=history,
        best_epoch=int(state["best_epoch"]),
        epochs_run=int(state["epoch"]),
        train_seconds=float(state["train_seconds"]),
        stopped_early=bool(state["stopped_early"]),
        run_dir=run.out_dir,
    )
