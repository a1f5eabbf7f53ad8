"""Export to ONNX / TFLite: outputs match Keras within 1e-4; metadata sidecar; CLI; errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models.export import ExportError, export_model, export_sidecar_path, run_exported

CLASSES = ["Angry", "Happy", "Sad"]


def save_small_model(path: Path, feature_set: str) -> Path:
    """An untrained fernet of width 4 (batch norm, residual adds, dropout, strided convolutions and, with features,
    feature_norm with non-trivial statistics and a batch-normalised feature branch), saved by models.io: the
    layers an export must translate, in a model that converts in seconds (Model A has 19 M parameters)."""
    import keras

    from models import build_model
    from models.io import save_model
    from parameters import FEATURE_SETS
    from training.loop import set_feature_statistics

    keras.utils.set_random_seed(0)
    dim = FEATURE_SETS[feature_set]
    model = build_model("fernet", len(CLASSES), dim, keep_prob=0.8, batchnorm_conv=True, batchnorm_fc=True, width=4)
    if dim:
        rng = np.random.default_rng(0)
        set_feature_statistics(model, rng.normal(20, 5, dim).astype(np.float32),
                               rng.uniform(1, 30, dim).astype(np.float32))
    metadata = {"model_name": "fernet", "class_names": CLASSES, "feature_set": feature_set, "feature_dim": dim,
                "input_size": [48, 48]}
    return save_model(model, path, metadata)


def batch(dim: int, n: int = 9):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n, 48, 48)).astype(np.float32)
    features = rng.normal(20, 6, (n, dim)).astype(np.float32) if dim else None
    return images, features


@pytest.mark.parametrize("feature_set", ["raw", "landmarks"])
@pytest.mark.parametrize("fmt", ["onnx", pytest.param("tflite", marks=pytest.mark.slow)])
def test_exported_outputs_match_keras(tmp_path, fmt, feature_set):
    from data.splits import model_inputs
    from models.io import load_model

    path = save_small_model(tmp_path / "model.keras", feature_set)
    model, metadata = load_model(path)
    images, features = batch(metadata["feature_dim"])
    expected = np.asarray(model(model_inputs(images, features), training=False))
    exported = export_model(path, fmt)
    assert exported == tmp_path / f"model.{fmt}"
    got = run_exported(exported, images, features)
    assert got.shape == (len(images), len(CLASSES))
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert np.abs(expected - expected.mean(axis=0)).max() > 1e-3  # the faces get different outputs: a real check
    sidecar = json.loads(export_sidecar_path(exported).read_text())
    assert sidecar["class_names"] == CLASSES and sidecar["feature_set"] == feature_set
    assert [i["name"] for i in sidecar["export"]["inputs"]] == (["image", "features"] if features is not None
                                                                 else ["image"])


def test_cli_export_and_errors(tmp_path, capsys):
    import export

    path = save_small_model(tmp_path / "run" / "model.keras", "raw")
    target = tmp_path / "deploy" / "fer.onnx"
    assert export.main(["--model", str(path), "--format", "onnx", "--out", str(target)]) == 0
    assert target.is_file() and (tmp_path / "deploy" / "fer.onnx.meta.json").is_file()
    assert "exported" in capsys.readouterr().out
    for bad in (["--model", str(path), "--format", "coreml"], ["--format", "onnx"],
                ["--model", str(path), "--format", "onnx", "--out", str(path)]):
        with pytest.raises(SystemExit) as exit_info:
            export.main(bad)
        assert exit_info.value.code == 2
    assert "is the model itself" in capsys.readouterr().err
    assert export.main(["--model", str(tmp_path / "model.skops"), "--format", "onnx"]) == 1
    err = capsys.readouterr().err
    assert "model.skops" in err and "only Keras models" in err and "Traceback" not in err
    with pytest.raises(ExportError, match="only Keras models"):
        export_model(tmp_path / "model.skops", "onnx")
