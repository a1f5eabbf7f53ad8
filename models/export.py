"""Export a trained Keras model to ONNX or TFLite, with its metadata in a sidecar JSON.

    export_model("runs/b/model.keras", "onnx")     # -> runs/b/model.onnx + runs/b/model.onnx.meta.json

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
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from errors import UserError
from parameters import EXPORT_FORMATS  # defined once, with the other choice lists

ONNX_OPSET = 17
OUTPUT_NAME = "probabilities"


class ExportError(UserError, ValueError):
    """A model that cannot be exported (not a Keras model, unknown format, converter missing)."""


def default_export_path(model_path: str | Path, fmt: str) -> Path:
    """``runs/b/model.keras`` -> ``runs/b/model.onnx`` / ``runs/b/model.tflite``."""
    return Path(model_path).with_suffix(f".{fmt}")


def export_sidecar_path(path: str | Path) -> Path:
    """``model.onnx`` -> ``model.onnx.meta.json`` (distinct from the Keras model's ``model.meta.json``)."""
    path = Path(path)
    return path.with_name(f"{path.name}.meta.json")


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
    for package in ("tensorflow", "keras", *(("tf2onnx", "onnx") if fmt == "onnx" else ())):
        with contextlib.suppress(PackageNotFoundError):
            out[package] = version(package)
    return out


def export_model(model_path: str | Path, fmt: str, export_path: str | Path | None = None) -> Path:
    """Export the ``.keras`` model at ``model_path`` to ``fmt`` (onnx | tflite); write the sidecar metadata.

    Returns the exported file's path (default: beside the model, see ``default_export_path``).
    Raises ExportError for an unknown format or a non-Keras model (the SVM baseline).
    """
    if fmt not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose from {list(EXPORT_FORMATS)}")
    model_path = Path(model_path)
    if model_path.suffix != ".keras":
        raise ExportError(f"{model_path}: only Keras models (.keras) can be exported (not the SVM baseline)")
    from models.io import load_model

    model, metadata = load_model(model_path)
    path = Path(export_path) if export_path is not None else default_export_path(model_path, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    (export_onnx if fmt == "onnx" else export_tflite)(model, path)
    inputs = [{"name": name, "shape": [None if s is None else int(s) for s in shape], "dtype": "float32"}
              for name, shape in _input_specs(model)]
    sidecar = {
        **metadata,
        "export": {
            "format": fmt,
            "source_model": str(model_path),
            "inputs": inputs,
            "outputs": [{"name": OUTPUT_NAME, "shape": [None, len(metadata["class_names"])], "dtype": "float32"}],
            "versions": _versions(fmt),
        },
    }
    export_sidecar_path(path).write_text(json.dumps(sidecar, indent=1, default=str) + "\n")
    return path


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
