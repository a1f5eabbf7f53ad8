"""Training under another Keras backend (``KERAS_BACKEND=jax``) with TensorFlow blocked, as on a GPU machine whose
image has JAX and PyTorch but no TensorFlow; the model it saves predicts the same under TensorFlow, and the run
continues there with ``--resume``. SIGTERM stops a JAX run cleanly, and the backend is read as Keras reads it.

The JAX tests need ``jax`` (requirements.txt); they skip with the reason where it is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from conftest import import_blocker, save_tiny_model, write_converted

from tf_logging import keras_backend

ROOT = Path(__file__).resolve().parents[1]

# TensorFlow and its converters are absent, as on a machine that has only JAX
BLOCK_TENSORFLOW = import_blocker("tensorflow", "tf2onnx", "tf_keras")


def run_blocked(script: str, env_backend: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": env_backend, "KERAS_HOME": str(tmp_path / "keras_home")}
    return subprocess.run([sys.executable, "-c", BLOCK_TENSORFLOW + textwrap.dedent(script)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=240)


@pytest.mark.skipif(find_spec("jax") is None, reason="jax is not installed (pip install -r requirements.txt)")
def test_train_resume_and_evaluate_under_jax_without_tensorflow(tmp_path):
    data = write_converted(tmp_path / "data", hog=None, landmarks=False)
    teacher = save_tiny_model(tmp_path / "teacher.keras", ["Angry", "Happy", "Sad"])  # saved under TensorFlow
    out = tmp_path / "run"
    common = ["--data", str(data), "--out", str(out), "--verbose", "2"]
    first = common + ["--model", "fernet", "--width", "4", "--features", "raw", "--epochs", "2", "--batch-size",
                      "32", "--augment", "--photometric", "0.25", "--teacher", str(teacher), "--distill-weight", "0.5",
                      "--schedule", "cosine", "--optimizer", "momentum", "--optimizer-param", "0.9"]
    done = run_blocked(f"""
        import keras, numpy as np
        import train
        assert keras.backend.backend() == "jax"
        assert train.main({first!r}) == 0
        assert train.main({common + ["--resume", "--epochs", "3", "--evaluate"]!r}) == 0
        from models.io import load_model
        model, meta = load_model({str(out / "model.keras")!r})
        images = np.load({str(data / "PublicTest" / "images.npy")!r}).astype("float32")[..., None]
        np.save({str(tmp_path / "jax_probabilities.npy")!r}, keras.ops.convert_to_numpy(model(images)))
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")
        assert not loaded, loaded
        print("JAX-OK")
    """, "jax", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "JAX-OK" in done.stdout
    assert "no ONNX twin or int8 export under Keras backend jax" in done.stderr
    assert "Keras backend jax: no TensorBoard logs" in done.stdout
    assert not (out / "model.onnx").exists() and not (out / "logs").exists()
    state = json.loads((out / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 3 and len(state["history"]["val_accuracy"]) == 3  # resumed, not restarted
    assert json.loads((out / "metrics.json").read_text())["private_test_accuracy"] >= 0

    from models.io import load_model  # this process runs TensorFlow

    model, _ = load_model(out / "model.keras")
    images = np.load(data / "PublicTest" / "images.npy").astype("float32")[..., None]
    ours = np.asarray(model(images, training=False))
    np.testing.assert_allclose(ours, np.load(tmp_path / "jax_probabilities.npy"), atol=1e-5)

    # the run started under JAX continues under TensorFlow (weights, optimizer state and Dropout's seed state)
    done = subprocess.run([sys.executable, "train.py", *common, "--resume", "--epochs", "4", "--no-onnx-twin"],
                          cwd=ROOT, env={**os.environ, "KERAS_BACKEND": "tensorflow"}, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming {out} after epoch 3" in done.stdout
    assert len(json.loads((out / "checkpoints" / "state.json").read_text())["history"]["val_accuracy"]) == 4


def test_keras_backend_is_read_as_keras_reads_it(tmp_path, monkeypatch):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert keras_backend() == "tensorflow"  # no keras.json
    (tmp_path / "keras.json").write_text('{"backend": "torch", "floatx": "float32"}')
    assert keras_backend() == "torch"
    (tmp_path / "keras.json").write_text("{not json")
    assert keras_backend() == "tensorflow"
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    assert keras_backend() == "jax"


@pytest.mark.skipif(find_spec("jax") is None, reason="jax is not installed (pip install -r requirements.txt)")
def test_sigterm_stops_a_jax_run_cleanly(tmp_path):
    """SIGTERM (what ``timeout`` sends; experiments/gpu/seeds.sh stops its runs so) ends a JAX run after its last
    checkpoint with exit 130, also when its KeyboardInterrupt lands inside a JAX call that swallows it."""
    import signal
    import time

    data = write_converted(tmp_path / "data", hog=None, landmarks=False)
    out = tmp_path / "run"
    command = [sys.executable, "train.py", "--data", str(data), "--out", str(out), "--model", "fernet", "--width",
               "4", "--features", "raw", "--epochs", "500", "--batch-size", "32", "--verbose", "2"]
    env = {**os.environ, "KERAS_BACKEND": "jax", "KERAS_HOME": str(tmp_path / "keras_home")}
    log = (tmp_path / "log.txt").open("w")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not (out / "checkpoints" / "state.json").is_file():  # the first epoch is done
            assert process.poll() is None and time.monotonic() < deadline, "no epoch finished"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        process.kill()
        log.close()
    output = (tmp_path / "log.txt").read_text()
    assert process.returncode == 130, output[-2000:]
    assert "interrupted; continue with" in output and "--resume" in output
    assert 1 <= json.loads((out / "checkpoints" / "state.json").read_text())["epoch"] < 500


def test_a_swallowed_sigterm_is_raised_again_at_the_next_batch():
    """The KeyboardInterrupt of SIGTERM can be lost inside a native call (JAX's array conversion swallows it); the
    training callback raises it again before the next batch."""
    import signal

    from errors import interrupt_pending, sigterm_as_interrupt
    from training.callbacks import EpochKeeper

    keeper = EpochKeeper.__new__(EpochKeeper)  # on_train_batch_begin needs no run state
    with sigterm_as_interrupt():
        keeper.on_train_batch_begin(0)  # nothing pending: training goes on
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs at the next bytecode
                pass
        except KeyboardInterrupt:
            pass  # what the native call does with it
        assert interrupt_pending()
        with pytest.raises(KeyboardInterrupt):
            keeper.on_train_batch_begin(1)
    assert not interrupt_pending()  # cleared when the block ends
