"""The bundled model (models/pretrained/): loadable in safe mode, self-describing, and the default of predict.py."""

from __future__ import annotations

import json

import numpy as np

from inference.classifiers import DEFAULT_MODEL_PATH


def test_bundled_model_is_small_and_self_describing():
    """The bundled model is committed: a missing or broken one is a failure, never a skip."""
    from models.io import load_model

    assert DEFAULT_MODEL_PATH.is_file(), f"{DEFAULT_MODEL_PATH} is missing from the checkout"
    assert DEFAULT_MODEL_PATH.stat().st_size <= 15 * 2**20
    model, metadata = load_model(DEFAULT_MODEL_PATH)  # Keras safe mode
    assert metadata["class_names"] == ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
    assert metadata["input_size"] == [48, 48]
    assert metadata["feature_set"] == "raw"
    assert 0.6 < metadata["metrics"]["private_test_accuracy"] <= 1
    probs = np.asarray(model(np.zeros((2, 48, 48, 1), np.float32), training=False))
    assert probs.shape == (2, 7) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_predict_uses_the_bundled_model_by_default(tmp_path, capsys):
    from skimage import data, io

    import predict

    photo = tmp_path / "astronaut.png"
    io.imsave(photo, data.astronaut())
    assert predict.main(["--image", str(photo), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 1
    assert records[0]["emotion"] == "Happy"  # she smiles broadly; a broken model or crop would not say so
    assert records[0]["confidence"] > 0.5
