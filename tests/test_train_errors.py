"""train.py's failures: one line naming the folder or flag, the exit codes of errors.py, no debris.

Resume without a run, a run interrupted before its first checkpoint, a diverging loss, a failed save, Ctrl-C and
SIGTERM, and real bugs that must keep their traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, write_converted

from errors import EXIT_ERROR, EXIT_INTERRUPTED

# Trainings run eagerly (conftest.eager_tensorflow): on a few dozen faces tracing costs more than training.
pytestmark = pytest.mark.usefixtures("eager_tensorflow")

FERNET = ["--model", "fernet", "--width", "4", "--features", "raw", "--batch-size", "32", "--verbose", "0"]


def run_main(*args: str | Path) -> int:
    import train

    return train.main([str(a) for a in args] + ["--no-onnx-twin"])  # test_train checks the twin


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_converted(tmp_path_factory.mktemp("converted"))


def partial_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".partial" in p.name]


@pytest.mark.parametrize("kind", ["empty", "mistyped"])
def test_resume_without_a_run_is_an_error_naming_the_folder(data_dir, tmp_path, capsys, kind):
    folder = tmp_path / "run"
    if kind == "empty":
        folder.mkdir()
    assert run_main("--data", data_dir, "--out", folder, "--resume") == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--resume: {folder}" in err and "Traceback" not in err
    assert ("holds no run" if kind == "empty" else "does not exist") in err
    assert sorted(tmp_path.iterdir()) == ([folder] if kind == "empty" else [])  # nothing written
    if kind == "empty":
        assert not any(folder.iterdir())


def test_interrupt_before_the_first_checkpoint_resumes_the_saved_config(data_dir, tmp_path, capsys, monkeypatch):
    """Ctrl-C during epoch 1: config.json is already written, the message says how to resume, and a bare
    --resume continues that config instead of the defaults (Model B, 13 epochs)."""
    import keras

    import train

    def interrupted_fit(self, *args, **kwargs):
        raise KeyboardInterrupt

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(keras.Model, "fit", interrupted_fit)
        assert run_main("--data", data_dir, *FERNET, "--epochs", "2", "--out", out) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "interrupted" in err and f"--out {out} --resume" in err and "Traceback" not in err
    saved = json.loads((out / "config.json").read_text())
    assert saved["network"]["model"] == "fernet" and saved["training"]["epochs"] == 2
    assert not (out / "checkpoints").exists() and not partial_files(out)
    config = train.build_config(train.parse_args(["--data", str(data_dir), "--out", str(out), "--resume"]))
    assert (config.network.model, config.network.width, config.training.epochs) == ("fernet", 4, 2)
    assert run_main("--data", data_dir, "--out", out, "--resume", "--verbose", "0") == 0
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 2 and state["config"]["network"]["model"] == "fernet"
    assert json.loads((out / "config.json").read_text()) == saved  # resumed as started, not overwritten


def test_state_json_is_replaced_atomically(tmp_path, monkeypatch):
    from training.run import write_json_atomic

    path = tmp_path / "state.json"
    write_json_atomic(path, {"epoch": 1})

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_json_atomic(path, {"epoch": 2})
    assert json.loads(path.read_text()) == {"epoch": 1} and list(tmp_path.iterdir()) == [path]


def test_non_finite_loss_stops_training_and_saves_nothing_non_finite(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    # --learning-rate inf is refused as it is parsed (tests/test_flags.py); a finite but absurd rate still diverges
    assert run_main("--data", data_dir, *FERNET, "--epochs", "3", "--learning-rate", "1e30", "--global-clipnorm", "0",
                    "--out", out) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "diverged" in err and "at epoch 1" in err and "--learning-rate" in err
    assert "Traceback" not in err
    assert not (out / "model.keras").exists() and not (out / "checkpoints").exists()  # no NaN model, no NaN resume
    assert not partial_files(out)


def test_epoch_keeper_never_keeps_non_finite_weights(tmp_path):
    """Even when the loss is finite, weights that turned non-finite at the last step are not saved as the best."""
    import keras

    from data.splits import SplitData
    from parameters import Config
    from training.callbacks import EpochKeeper
    from training.run import TrainingRun

    config = Config().with_overrides({"model": "fernet", "feature_set": "raw", "epochs": 1})
    empty = SplitData(np.zeros((1, 48, 48), np.uint8), np.zeros(1, np.int64), None)
    run = TrainingRun(config, tmp_path, ["Angry"], {}, "0", empty, empty, verbose=0)
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.layers[-1].kernel.assign(np.full((2, 1), np.nan, np.float32))
    state = {"epoch": 0, "best": -1.0, "best_epoch": 0, "wait": 0, "history": {}, "stopped_early": False}
    keeper = EpochKeeper(run, state, best_model=None)
    keeper.set_model(model)
    assert keeper._keep_if_best(1, 0.5) is False
    assert keeper.diverged == "non-finite weights at epoch 1" and model.stop_training
    assert state["best"] == -1.0 and not (tmp_path / "model.keras").exists()


def test_a_failed_save_leaves_no_partial_model(tmp_path, monkeypatch):
    import zipfile

    import keras

    from models.io import save_model

    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    meta = {"model_name": "fernet", "class_names": ["a", "b"], "feature_set": "raw", "feature_dim": 0}

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(zipfile, "ZipFile", full_disk)
    with pytest.raises(OSError, match="No space"):
        save_model(model, tmp_path / "model.keras", meta)
    assert list(tmp_path.iterdir()) == []


def test_bad_values_are_one_line_but_bugs_keep_their_traceback(data_dir, tmp_path, capsys, monkeypatch):
    params = tmp_path / "params.json"
    params.write_text('{"keep_prob": 1.5}')  # a bad flag value is a command-line error (exit 2, tests/test_flags.py)
    assert run_main("--data", data_dir, *FERNET, "--params", params, "--out", tmp_path / "r") == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"train.py: error: {params}: keep_prob: 1.5 must be <= 1") and "Traceback" not in err
    assert not (tmp_path / "r").exists()

    import training.trainer

    def buggy_train(*args, **kwargs):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr(training.trainer, "train", buggy_train)
    with pytest.raises(ValueError, match="a bug"):  # not swallowed into a one-line "error"
        run_main("--data", data_dir, *FERNET, "--out", tmp_path / "r")


@pytest.mark.slow
def test_sigterm_exits_130_and_the_run_resumes(data_dir, tmp_path):
    """A real process, sent SIGTERM after its first epoch (Ctrl-C's KeyboardInterrupt takes the same path, see
    above): it says "interrupted" and how to resume, exits 130 with no traceback and no partial file; --resume
    then continues from the checkpoint."""
    out = tmp_path / "run"
    command = [sys.executable, str(ROOT / "train.py"), "--data", str(data_dir), *FERNET, "--verbose", "2",
               "--epochs", "200", "--out", str(out)]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        for line in process.stdout:  # "epoch 1/200: PublicTest accuracy ..." once the first checkpoint is written
            if line.startswith("epoch 1/200") or time.monotonic() > deadline:
                break
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == EXIT_INTERRUPTED, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("train.py: interrupted") and f"--out {out} --resume" in last and "Traceback" not in err
    assert not partial_files(out)
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert 1 <= state["epoch"] < 200
    assert run_main("--data", data_dir, "--out", out, "--resume", "--epochs", str(state["epoch"] + 1),
                    "--verbose", "0") == 0
    assert json.loads((out / "checkpoints" / "state.json").read_text())["epoch"] == state["epoch"] + 1
