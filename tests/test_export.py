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


# ------------------------------------------------------------------------------------------------- int8 ONNX


def write_calibration_csv(path: Path, n: int) -> Path:
    """A FER2013 csv with ``n`` Training faces of smooth, face-like structure (a bright disc on a ramp, varying in
    place and size) and two test rows, gzipped: what ``--calibration`` reads."""
    from tests.conftest import write_fer_csv

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:48, :48]
    rows = []
    for i in range(n):
        cy, cx, r = rng.uniform(14, 34), rng.uniform(14, 34), rng.uniform(6, 14)
        face = 40 + 2 * xx + 120 * (((yy - cy) ** 2 + (xx - cx) ** 2) < r * r) + rng.normal(0, 8, (48, 48))
        rows.append((i % 7, np.clip(face, 0, 255).astype(np.uint8), "Training"))
    rows += [(0, rows[0][1], "PublicTest"), (1, rows[1][1], "PrivateTest")]
    return write_fer_csv(path, rows)


def test_int8_export_quantizes_the_graph_and_agrees_with_keras(tmp_path, capsys):
    import onnx

    import export

    path = save_small_model(tmp_path / "model.keras", "raw")
    float_path = export_model(path, "onnx", tmp_path / "float.onnx")
    csv = write_calibration_csv(tmp_path / "fer.csv.gz", 64)
    assert export.main(["--model", str(path), "--format", "onnx", "--int8", "--calibration", str(csv),
                        "--calibration-faces", "32"]) == 0
    out = capsys.readouterr().out
    assert "int8:" in out and "held-out Training faces" in out
    twin = tmp_path / "model.int8.onnx"  # not model.onnx, the float twin the prediction commands pick up
    assert not (tmp_path / "model.onnx").exists()
    graph = onnx.load(twin).graph
    ops = {node.op_type for node in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ around the convolutions
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert int8_weights  # convolution kernels stored as int8
    assert twin.stat().st_size < 0.6 * float_path.stat().st_size
    quantization = json.loads(export_sidecar_path(twin).read_text())["export"]["quantization"]
    assert quantization["type"] == "int8" and quantization["calibration_faces"] == 32
    assert quantization["check_faces"] == 32 and quantization["top1_agreement_vs_keras"] >= 0.95
    images, _ = batch(0)
    floats, ints = run_exported(float_path, images), run_exported(twin, images)
    assert 0 < np.abs(floats - ints).max() < 0.1  # quantized (not the float graph), and close to it
    assert not list(tmp_path.glob(".*partial*"))  # no temporary file left behind
    from inference.predictor import FacePredictor
    from models.io import read_metadata

    assert read_metadata(twin)["class_names"] == CLASSES  # its own sidecar, model.int8.onnx.meta.json
    predictor = FacePredictor(twin, assume_face=True)  # what predict.py --model model.int8.onnx runs
    assert predictor.backend_name == "onnx"


def test_int8_export_from_a_converted_directory_for_a_feature_model(tmp_path):
    from tests.conftest import write_converted

    path = save_small_model(tmp_path / "model.keras", "landmarks")
    data = write_converted(tmp_path / "converted", {"Training": 64, "PublicTest": 4, "PrivateTest": 4})
    twin = export_model(path, "onnx", int8_calibration=data, calibration_faces=32)
    assert twin.name == "model.int8.onnx"
    quantization = json.loads(export_sidecar_path(twin).read_text())["export"]["quantization"]
    assert quantization["calibration_data"] == "converted" and quantization["top1_agreement_vs_keras"] >= 0.95


def test_int8_export_refuses_bad_calibration_and_keeps_the_old_twin(tmp_path, capsys, monkeypatch):
    import export
    import models.quantize

    path = save_small_model(tmp_path / "model.keras", "raw")
    twin = export_model(path, "onnx", tmp_path / "model.int8.onnx")  # an earlier file a failed export must keep
    before = twin.read_bytes()
    csv = write_calibration_csv(tmp_path / "fer.csv.gz", 40)
    base = ["--model", str(path), "--format", "onnx"]
    for bad, message in (([*base, "--int8"], "--int8 needs --calibration"),
                         ([*base, "--calibration", str(csv)], "only used with --int8"),
                         (["--model", str(path), "--format", "tflite", "--int8", "--calibration", str(csv)],
                          "--int8 is for --format onnx"),
                         ([*base, "--int8", "--calibration", str(csv), "--calibration-faces", "0"], "at least 1")):
        with pytest.raises(SystemExit) as exit_info:
            export.main(bad)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    missing = tmp_path / "nowhere.csv"
    for calibration, faces, message in ((missing, "16", f"--calibration {missing}: no such file"),
                                        (csv, "32", "40 Training faces, 64 needed")):
        assert export.main([*base, "--int8", "--calibration", str(calibration), "--calibration-faces", faces]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    feature_model = save_small_model(tmp_path / "features" / "model.keras", "landmarks")
    assert export.main(["--model", str(feature_model), "--format", "onnx", "--int8", "--calibration", str(csv),
                        "--calibration-faces", "16"]) == 1
    assert "needs its features" in capsys.readouterr().err
    monkeypatch.setattr(models.quantize, "MIN_AGREEMENT", 1.01)  # no int8 model can pass: the guard must fire
    assert export.main([*base, "--int8", "--calibration", str(csv), "--calibration-faces", "16"]) == 1
    err = capsys.readouterr().err
    assert "agrees with Keras on" in err and "export without --int8" in err
    assert f"{tmp_path / 'model.int8.onnx'}:" in err  # the file it would have written, not a temporary name
    assert twin.read_bytes() == before and not list(tmp_path.glob(".*partial*"))
