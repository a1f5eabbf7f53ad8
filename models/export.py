"""Export a trained Keras model to ONNX or TFLite, with its metadata in a sidecar JSON.

    export_model("runs/b/model.keras", "onnx")     # -> runs/b/model.onnx + runs/b/model.onnx.meta.json
    write_onnx_twin("runs/b/model.keras")          # the same, beside the model: the twin predict.py runs on

The bundled model's twin was made by ``python export.py --model models/pretrained/fer_model.keras --format onnx``,
its int8 version ``fer_model.int8.onnx`` (``models.quantize``) by the same command with ``--int8 --calibration``.
An ONNX export is checked against Keras on synthetic faces before it replaces anything (``PARITY_ATOL``), and both
files are written under temporary names and renamed. The sidecar records the source file's SHA-256
(``export.source_sha256``) so ``inference.backends`` can tell a twin from a stale one.

Inputs keep the Keras names and layout: ``image`` (n, 48, 48, 1) float32 grey levels 0..255 and, for feature-set
models, ``features`` (n, d) float32 raw features (standardisation is inside the graph); output ``probabilities``
(n, k) float32 softmax over the sidecar's ``class_names``.

How (TensorFlow 2.21 / Keras 3.15):

* ONNX: the model's inference function is frozen (variables and captured tensors become constants) and converted by
  ``tf2onnx.convert.from_graph_def``. Keras's own ``model.export(format="onnx")`` (also tf2onnx) leaves the
  ``Normalization`` layer's mean/variance as extra graph *inputs*, so it is not used.
* TFLite: Keras's ``model.export(format="litert")`` (TFLiteConverter underneath). Converting a hand-made
  ``tf.function`` with ``TFLiteConverter.from_concrete_functions`` produced NaN outputs for the feature models here.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from errors import UserError
from models.io import export_sidecar_path  # defined beside sidecar_path; callers import it from here too
from parameters import EXPORT_FORMATS  # defined once, with the other choice lists

ONNX_OPSET = 17
OUTPUT_NAME = "probabilities"
PARITY_ATOL = 1e-4  # largest |ONNX - Keras| probability accepted on the synthetic check faces
PARITY_FACES = 32


class ExportError(UserError, ValueError):
    """A model that cannot be exported (not a Keras model, unknown format, converter missing)."""


def default_export_path(model_path: str | Path, fmt: str, int8: bool = False) -> Path:
    """``runs/b/model.keras`` -> ``runs/b/model.onnx`` / ``runs/b/model.tflite``; int8: ``runs/b/model.int8.onnx``
    (never the twin's name: the twin is the float graph, within 1e-4 of Keras)."""
    return Path(model_path).with_suffix(f".int8.{fmt}" if int8 else f".{fmt}")


def export_quantization(path: str | Path) -> dict[str, Any]:
    """What ``export.quantization`` in an int8 export's sidecar records (recipe, agreement with Keras); {} for a
    float export."""
    return json.loads(export_sidecar_path(path).read_text()).get("export", {}).get("quantization") or {}


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (a few ms for a model of a few MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _input_specs(model) -> list[tuple[str, tuple]]:
    return [(t.name, tuple(t.shape)) for t in model.inputs]


def _rename_onnx(proto, renames: dict[str, str]) -> None:
    """Rename graph inputs/outputs (tf2onnx keeps TensorFlow's ``image:0`` / ``Identity:0``)."""
    graph = proto.graph
    for value in [*graph.input, *graph.output]:
        value.name = renames.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]


def export_onnx(model, path: Path, opset: int = ONNX_OPSET) -> None:
    """Keras model -> ONNX file at ``path`` (frozen graph through tf2onnx)."""
    try:
        import tf2onnx
    except ImportError as err:
        raise ExportError("ONNX export needs tf2onnx: pip install -r requirements.txt") from err
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    specs = _input_specs(model)
    signature = [tf.TensorSpec(shape, tf.float32, name=name) for name, shape in specs]
    if len(specs) == 1:
        function = tf.function(lambda image: model(image, training=False))
    else:
        function = tf.function(lambda image, features: model([image, features], training=False))
    frozen = convert_variables_to_constants_v2(function.get_concrete_function(*signature))
    inputs = [t.name for t in frozen.inputs]
    outputs = [t.name for t in frozen.outputs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proto, _ = tf2onnx.convert.from_graph_def(
            frozen.graph.as_graph_def(), input_names=inputs, output_names=outputs, opset=opset
        )
    renames = {tf_name: name for tf_name, (name, _) in zip(inputs, specs, strict=True)}
    renames[outputs[0]] = OUTPUT_NAME
    _rename_onnx(proto, renames)
    path.write_bytes(proto.SerializeToString())


def export_tflite(model, path: Path) -> None:
    """Keras model -> TFLite flatbuffer at ``path`` (Keras's LiteRT export)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.export(str(path), format="litert", verbose=False)


def _versions(fmt: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for package in ("tensorflow", "keras", *(("tf2onnx", "onnx", "onnxruntime") if fmt == "onnx" else ())):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    return out


def check_onnx_parity(model, onnx_path: Path, metadata: dict[str, Any], n: int = PARITY_FACES) -> float:
    """Largest |ONNX - Keras| probability on ``n`` synthetic faces (uniform grey noise, smooth gradients and
    constant images; features drawn around the model's own feature statistics). Raises ExportError above
    PARITY_ATOL, naming the file."""
    rng = np.random.default_rng(0)
    size = int((metadata.get("input_size") or [48, 48])[0])
    ramp = np.linspace(0, 255, size, dtype=np.float32)
    images = np.concatenate([
        rng.integers(0, 256, (n - 4, size, size)).astype(np.float32),
        np.stack([np.add.outer(ramp, ramp) / 2, np.add.outer(ramp[::-1], ramp) / 2,
                  np.zeros((size, size), np.float32), np.full((size, size), 255, np.float32)]),
    ])[..., None]
    dim = int(metadata.get("feature_dim") or 0)
    features = None
    if dim:
        mean, std = np.zeros(dim, np.float32), np.ones(dim, np.float32)
        with contextlib.suppress(ValueError, AttributeError):  # no feature_norm layer: standard normal features
            layer = model.get_layer("feature_norm")  # mean/variance: (1, dim) tensors, fitted or given
            mean = np.broadcast_to(np.asarray(layer.mean, np.float32).reshape(-1), (dim,))
            std = np.sqrt(np.broadcast_to(np.asarray(layer.variance, np.float32).reshape(-1), (dim,)))
        features = (mean + std * rng.standard_normal((n, dim))).astype(np.float32)
    expected = np.asarray(model(images if features is None else [images, features], training=False), np.float32)
    got = run_exported(onnx_path, images, features)
    error = float(np.abs(got - expected).max())
    if not error <= PARITY_ATOL:
        raise ExportError(f"{onnx_path}: ONNX output differs from Keras by {error:.2e} (> {PARITY_ATOL:g})")
    return error


def export_model(model_path: str | Path, fmt: str, export_path: str | Path | None = None, *,
                 int8_calibration: str | Path | None = None, calibration_faces: int | None = None) -> Path:
    """Export the ``.keras`` model at ``model_path`` to ``fmt`` (onnx | tflite); write the sidecar metadata.

    Returns the exported file's path (default: beside the model, see ``default_export_path``). ONNX exports are
    checked against Keras first (``check_onnx_parity``). Nothing is replaced until both files are complete.

    ``int8_calibration`` (ONNX only): quantize the checked float graph to int8 (``models.quantize``), activation
    ranges from ``calibration_faces`` Training faces of that data (a converted directory or a FER2013 csv); the
    int8 model must then agree with Keras on as many other Training faces (``check_int8``). The sidecar's
    ``export.quantization`` records how.

    Raises ExportError for an unknown format, a non-Keras model (the SVM baseline) or a failed parity check, and
    models.quantize.QuantizeError for unusable calibration data or an int8 model too far from Keras.
    """
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose from {list(EXPORT_FORMATS)}")
    if int8_calibration is not None and fmt != "onnx":
        raise ExportError(f"int8 quantization is for ONNX exports, not {fmt}")
    model_path = Path(model_path)
    if model_path.suffix != ".keras":
        raise ExportError(f"{model_path}: only Keras models (.keras) can be exported (not the SVM baseline)")
    from models.io import load_model

    model, metadata = load_model(model_path)
    check_faces = None
    if int8_calibration is not None:  # read the calibration data before the slow conversion: fail early
        from models.quantize import CALIBRATION_FACES
        from models.quantize import calibration_faces as draw_faces

        n = calibration_faces or CALIBRATION_FACES
        check_faces = draw_faces(int8_calibration, metadata.get("feature_set") or "raw", 2 * n)
    if export_path is None:
        export_path = default_export_path(model_path, fmt, int8=int8_calibration is not None)
    path = Path(export_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix}")
    tmp_sidecar = export_sidecar_path(tmp)
    tmp_float = tmp.with_name(f".{path.stem}.float.partial{path.suffix}")
    try:
        (export_onnx if fmt == "onnx" else export_tflite)(model, tmp)
        parity = check_onnx_parity(model, tmp, metadata) if fmt == "onnx" else None
        quantization = None
        if check_faces is not None:
            quantization = _quantize_checked(model, tmp, tmp_float, check_faces, int8_calibration, path)
        inputs = [{"name": name, "shape": [None if s is None else int(s) for s in shape], "dtype": "float32"}
                  for name, shape in _input_specs(model)]
        sidecar = {
            **metadata,
            "export": {
                "format": fmt,
                "source_model": model_path.name,
                "source_sha256": file_sha256(model_path),
                "inputs": inputs,
                "outputs": [{"name": OUTPUT_NAME, "shape": [None, len(metadata["class_names"])], "dtype": "float32"}],
                "versions": _versions(fmt),
                **({"max_abs_diff_vs_keras": parity, "parity_faces": PARITY_FACES} if parity is not None else {}),
                **({"quantization": quantization} if quantization is not None else {}),
            },
        }
        tmp_sidecar.write_text(json.dumps(sidecar, indent=1, default=str) + "\n")
        os.replace(tmp, path)
        os.replace(tmp_sidecar, export_sidecar_path(path))
    finally:
        for leftover in (tmp, tmp_sidecar, tmp_float):
            leftover.unlink(missing_ok=True)
    return path


def _quantize_checked(model, path: Path, float_copy: Path, faces: tuple, calibration: str | Path,
                      target: Path) -> dict:
    """Replace the float ONNX file ``path`` by its int8 quantization (the float graph moved to ``float_copy``
    meanwhile), calibrated on the first half of ``faces`` and checked against Keras on the second half; errors
    name ``target``, the file the export will become."""
    from models.quantize import FLOAT_OPS, PERCENTILE, check_int8, quantize_onnx

    images, features = faces
    half = len(images) // 2
    calib = (images[:half], None if features is None else features[:half])
    held = (images[half:], None if features is None else features[half:])
    os.replace(path, float_copy)
    quantize_onnx(float_copy, path, *calib)
    reference = np.asarray(model(held[0] if held[1] is None else [held[0], held[1]], training=False), np.float32)
    report = check_int8(reference, run_exported(path, *held), target)
    return {"type": "int8", "format": "QDQ", "weights": "int8 per channel, 7-bit range",
            "activations": f"uint8, {PERCENTILE}th percentile range", "float_ops": list(FLOAT_OPS),
            "calibration_data": Path(calibration).name, "calibration_faces": half, "split": "Training", **report}


def write_onnx_twin(keras_path: str | Path) -> Path:
    """Export ``run/model.keras`` to its ONNX twin ``run/model.onnx`` (+ ``model.onnx.meta.json``), the file that
    ``predict.py``, ``predict_from_video.py`` and folder evaluation run on ONNX Runtime instead of TensorFlow.

    For the end of a training run. Returns the twin's path; raises ExportError (parity, converter) like export_model.
    """
    return export_model(keras_path, "onnx", default_export_path(keras_path, "onnx"))


def run_exported(path: str | Path, images: np.ndarray, features: np.ndarray | None = None) -> np.ndarray:
    """Run an exported model: ``images`` (n, 48, 48[, 1]) grey 0..255 [+ ``features`` (n, d)] -> (n, k) float32.

    ONNX through onnxruntime, TFLite through ``tf.lite.Interpreter`` (its signature runner).
    """
    path = Path(path)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim == 3:
        images = images[..., None]
    feed: dict[str, Any] = {"image": images}
    if features is not None:
        feed["features"] = np.asarray(features, dtype=np.float32)
    if path.suffix == ".onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return np.asarray(session.run([OUTPUT_NAME], feed)[0], dtype=np.float32)
    if path.suffix == ".tflite":
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            interpreter = tf.lite.Interpreter(model_path=str(path))
        runner = interpreter.get_signature_runner()
        outputs = runner(**feed)
        return np.asarray(next(iter(outputs.values())), dtype=np.float32)
    raise ExportError(f"{path}: expected a .onnx or .tflite file")
