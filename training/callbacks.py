"""The Keras callbacks of a training run: :class:`EpochKeeper` (history, best model, checkpoint, early stopping,
divergence; any Keras backend) and :class:`ScalarLogger` (TensorBoard scalars; TensorFlow only). Imported only when
a Keras run starts."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from errors import interrupt_pending
from training.run import MODEL_FILE, TrainingRun, write_history_csv, write_json_atomic


def seed_generators(model) -> list:
    """The random-state holders of the model's layers (Dropout), in layer order."""
    return [layer.seed_generator for layer in model.layers if getattr(layer, "seed_generator", None) is not None]


def weights_are_finite(model) -> bool:
    return all(np.isfinite(w).all() for w in model.get_weights())


class EpochKeeper(keras.callbacks.Callback):
    """After each epoch: record the history, keep the best-on-PublicTest model, write the checkpoint and
    ``state.json`` (for an exact resume), stop early, and print the PublicTest line.

    ``state`` is the dict saved as ``checkpoints/state.json`` and is updated in place. A non-finite loss ends
    training at once: that epoch is neither kept as best nor checkpointed, and ``diverged`` names it.
    """

    def __init__(self, run: TrainingRun, state: dict[str, Any], best_model):
        super().__init__()
        self.run, self.state, self.best_model = run, state, best_model
        self.diverged: str | None = None  # "loss nan at epoch 3" once training diverged
        self._epoch_start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        # SIGTERM's KeyboardInterrupt can be swallowed inside a JAX call; raise it again here, before the next
        # batch (batch-begin callbacks run on the main thread; batch-end ones may run on Keras's dispatch thread)
        if interrupt_pending():
            raise KeyboardInterrupt

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        bad = [key for key in ("loss", "val_loss") if key in logs and not math.isfinite(float(logs[key]))]
        if bad:
            self.diverged = f"{bad[0]} {float(logs[bad[0]])} at epoch {epoch + 1}"
            self.model.stop_training = True
            return
        self.state["train_seconds"] += time.perf_counter() - self._epoch_start
        logs["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        self._record(logs)
        accuracy = float(logs["val_accuracy"])
        improved = self._keep_if_best(epoch + 1, accuracy)
        self._check_early_stopping()
        self.state["epoch"] = epoch + 1
        # Dropout's random state is not part of the .keras weights; keep it so a resume continues exactly.
        self.state["seed_states"] = [keras.ops.convert_to_numpy(g.state).tolist()
                                    for g in seed_generators(self.model)]
        if self.run.config.training.save_model:  # off (e.g. for hyperparameter trials): no checkpoint, no resume
            self._save_checkpoint()
        write_history_csv(self.run.out_dir / "history.csv", self.state["history"])
        self._log_epoch(epoch + 1, accuracy, improved)

    def _record(self, logs: dict[str, Any]) -> None:
        for key, value in logs.items():
            self.state["history"].setdefault(key, []).append(float(value))

    def _keep_if_best(self, epoch: int, accuracy: float) -> bool:
        """Save the model as ``model.keras`` when PublicTest accuracy improved and its weights are finite."""
        if not accuracy > self.state["best"]:
            self.state["wait"] += 1
            return False
        if not weights_are_finite(self.model):
            self.diverged = f"non-finite weights at epoch {epoch}"
            self.model.stop_training = True
            return False
        self.state.update(best=accuracy, best_epoch=epoch, wait=0)
        if self.run.config.training.save_model:
            from models.io import save_model

            self.best_model.set_weights(self.model.get_weights())
            metrics = {"public_test_accuracy": accuracy, "best_epoch": epoch}
            save_model(self.best_model, self.run.out_dir / MODEL_FILE, self.run.metadata(metrics))
        return True

    def _check_early_stopping(self) -> None:
        patience = self.run.config.training.early_stopping_patience
        if patience and self.state["wait"] >= patience:
            self.model.stop_training = True
            self.state["stopped_early"] = True

    def _save_checkpoint(self) -> None:
        """``checkpoints/last.keras`` (weights + optimizer state), then ``state.json``, each written atomically."""
        directory = self.run.checkpoint_dir
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / ".last.partial.keras"
        try:
            self.model.save(tmp)
            tmp.replace(directory / "last.keras")
        finally:
            tmp.unlink(missing_ok=True)
        write_json_atomic(directory / "state.json", self.state)

    def _log_epoch(self, epoch: int, accuracy: float, improved: bool) -> None:
        state, patience = self.state, self.run.config.training.early_stopping_patience
        self.run.log(
            f"epoch {epoch}/{self.run.config.training.epochs}: PublicTest accuracy {accuracy:.4f}"
            f"{' (best)' if improved else ''}; best {state['best']:.4f} at epoch {state['best_epoch']}"
            + (f"; no improvement for {patience} epochs: stopping" if state["stopped_early"] else "")
        )


class ScalarLogger(keras.callbacks.Callback):
    """Per-epoch TensorBoard scalars in ``log_dir/{train,validation}``.

    Keras's TensorBoard callback needs the ``tensorboard`` package; ``tf.summary.write`` with the scalars plugin's
    metadata is core TensorFlow and gives TensorBoard the same epoch_* curves.
    """

    def __init__(self, log_dir: Path):
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        super().__init__()
        self.tf, self.log_dir = tf, log_dir
        self.writers: dict[str, Any] = {}
        self.metadata = summary_pb2.SummaryMetadata()
        self.metadata.plugin_data.plugin_name = "scalars"

    def _writer(self, name: str):
        if name not in self.writers:
            self.writers[name] = self.tf.summary.create_file_writer(str(self.log_dir / name))
        return self.writers[name]

    def on_epoch_end(self, epoch, logs=None):
        tf = self.tf
        for key, value in (logs or {}).items():
            name, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writer(name).as_default():
                tf.summary.write(f"epoch_{tag}", tf.constant(float(value)), step=epoch, metadata=self.metadata)
        for writer in self.writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()
