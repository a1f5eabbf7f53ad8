"""Int8 quantization of an exported ONNX model: a classifier 2.3-2.9x faster on the CPU, as accurate within noise.

    images, features = calibration_faces("../shared/data/fer2013.csv.gz", "raw", 2 * 1024)
    quantize_onnx("model.onnx", "model.int8.onnx", images[:1024], features)

``export.py --format onnx --int8 --calibration DATA`` runs this after the float export. ONNX Runtime's static
quantization (``onnxruntime.quantization.quantize_static``), QDQ format, so ONNX Runtime fuses each convolution with
its quantize/dequantize pair into an integer kernel (VNNI on x86 CPUs that have it):

* weights int8 per output channel, using 7 of the 8 bits (``reduce_range``): x86 CPUs without VNNI (AVX2, early
  AVX-512) multiply uint8 by int8 through 16-bit sums that full-range weights can overflow;
* activations uint8, their ranges the 99.99th percentile over ``CALIBRATION_FACES`` real Training faces;
* the head (dense layer, softmax) left float: a quantized softmax would round every probability to 1/255.

Measured on the 2-core development machine (AVX-512 VNNI), batch 256: the bundled width-16 fernet 1,780 -> 4,034
images/s, PublicTest 68.40 -> 68.46 %, the same class as the float model for 98.0 % of faces; the width-24 fernet
969 -> 2,830 images/s, 69.77 -> 69.77 %, 97.4 %. Variants on the bundled model, each calibrated on the same 1,024
faces (PublicTest accuracy / agreement): as above 68.35 % / 97.8 %; full-range weights 68.18 % / 98.2 % at the same
speed; with them, min-max ranges 68.12 % / 98.2 %, the 99.999th percentile 68.18 % / 98.3 %, int8 activations
68.21 % / 98.3 %, the first convolution left float 67.99 % / 97.7 %; 4,096 calibration faces (width 24): no change.
``check_int8`` refuses a quantized model that agrees with Keras on fewer than ``MIN_AGREEMENT`` of held-out
Training faces.

Calibration data: a ``convert_fer2013.py`` output directory (any feature set it holds) or a FER2013 csv(.gz) (raw
pixels only: a feature-set model needs the landmarks/HOG a conversion computed). Training faces only, never the test
splits; a seeded sample, so an export is reproducible.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from errors import UserError

CALIBRATION_FACES = 1024  # faces whose activations set the uint8 ranges
MIN_AGREEMENT = 0.95  # least top-1 agreement with the float model on held-out Training faces
SEED = 0
FLOAT_OPS = ("Gemm", "MatMul", "Softmax")  # left unquantized, see quantize_onnx
PERCENTILE = 99.99  # activation range: the central 99.99 % of the calibration values, not the extreme outliers


class QuantizeError(UserError, ValueError):
    """Calibration data that cannot be used, or a quantized model too far from the float one."""


def calibration_faces(source: str | Path, feature_set: str, n: int, seed: int = SEED
                      ) -> tuple[np.ndarray, np.ndarray | None]:
    """``n`` Training faces drawn at random (seeded) from ``source``: images (n, 48, 48, 1) float32 0..255 and,
    for a feature-set model, their features (n, d) float32 (None for ``raw``).

    ``source``: a ``convert_fer2013.py`` output directory or a FER2013 csv(.gz). Raises QuantizeError naming the
    source when it is absent, has no Training split, lacks the features, or holds fewer than ``n`` faces.
    """
    source = Path(source)
    if source.is_dir():
        from data.dataset import load_converted

        try:
            images, _, features = load_converted(source, "Training", feature_set)
        except (FileNotFoundError, ValueError) as err:
            raise QuantizeError(f"--calibration {source}: {err}") from None
    elif source.is_file():
        if feature_set != "raw":
            raise QuantizeError(
                f"--calibration {source}: a {feature_set!r} model needs its features; give the directory "
                "convert_fer2013.py wrote (with the conversion flags the model was trained on)"
            )
        from data.fer2013 import load_fer2013

        data = load_fer2013(source)  # Fer2013FormatError names the file and row
        if "Training" not in data.splits:
            raise QuantizeError(f"--calibration {source}: no Training rows (found {sorted(data.splits)})")
        images, features = data.splits["Training"].images, None
    else:
        raise QuantizeError(f"--calibration {source}: no such file or directory")
    if len(images) < n:
        raise QuantizeError(f"--calibration {source}: {len(images)} Training faces, {n} needed")
    pick = np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))
    chosen = np.asarray(images[pick], dtype=np.float32).reshape(n, *images.shape[1:3], 1)
    return chosen, None if features is None else np.asarray(features[pick], dtype=np.float32)


def quantize_onnx(src: str | Path, dst: str | Path, images: np.ndarray, features: np.ndarray | None = None,
                  batch_size: int = 64) -> None:
    """Static int8 quantization of the float ONNX model ``src`` into ``dst``, activation ranges (percentile) from
    ``images`` (+ ``features``). ``dst`` is written only when quantization succeeds (callers give a temporary
    name)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Faces(CalibrationDataReader):
        def __init__(self):
            self.start = 0

        def get_next(self):
            if self.start >= len(images):
                return None
            stop = self.start + batch_size
            feed = {"image": images[self.start:stop]}
            if features is not None:
                feed["features"] = features[self.start:stop]
            self.start = stop
            return feed

    import onnx

    with tempfile.TemporaryDirectory(prefix="fer-int8-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        with (warnings.catch_warnings(), open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull),
              contextlib.redirect_stdout(devnull)):  # the calibrator prints its progress
            warnings.simplefilter("ignore")
            # shape inference and graph optimisation (batch norm folded into the convolutions) before quantizing;
            # symbolic shapes would need sympy, and every shape here but the batch is static
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
            # the head stays float (see the module docstring); it is a negligible part of the work
            head = [node.name for node in onnx.load(str(prepared)).graph.node if node.op_type in FLOAT_OPS]
            quantize_static(
                str(prepared), str(dst), Faces(), quant_format=QuantFormat.QDQ, per_channel=True,
                nodes_to_exclude=head, reduce_range=True,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.Percentile, extra_options={"CalibPercentile": PERCENTILE},
            )


def check_int8(reference: np.ndarray, quantized: np.ndarray, path: str | Path) -> dict[str, float]:
    """Top-1 agreement and largest probability difference of the quantized model against the float reference
    (both (n, k)); QuantizeError naming ``path`` below ``MIN_AGREEMENT``."""
    agreement = float((reference.argmax(1) == quantized.argmax(1)).mean())
    result = {"top1_agreement_vs_keras": agreement,
              "max_abs_diff_vs_keras": float(np.abs(reference - quantized).max()),
              "check_faces": len(reference)}
    if not agreement >= MIN_AGREEMENT:
        raise QuantizeError(
            f"{path}: the int8 model agrees with Keras on {agreement:.1%} of {len(reference)} held-out Training "
            f"faces (< {MIN_AGREEMENT:.0%}); export without --int8"
        )
    return result
