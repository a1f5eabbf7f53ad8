"""Export a saved Keras model to ONNX or TFLite for deployment, with its metadata beside it.

    # runs/b/model.onnx + runs/b/model.onnx.meta.json (class names, feature set, inputs)
    python export.py --model runs/b/model.keras --format onnx
    # TFLite to a path of your choice
    python export.py --model models/pretrained/fer_model.keras --format tflite --out deploy/fer.tflite
    # int8 ONNX -> models/pretrained/fer_model.int8.onnx: 2.4x the images/s on CPUs with VNNI
    python export.py --model models/pretrained/fer_model.keras --format onnx --int8 \\
        --calibration ../shared/data/fer2013.csv.gz
    python predict.py --backend int8 --image docs/astronaut.jpg        # or --model ...int8.onnx

--int8 quantizes the checked float graph (weights int8 per channel, activations uint8) with ONNX Runtime's static
quantization. --calibration gives the faces that set the activation ranges: a FER2013 csv(.gz) (raw-pixel models) or
a convert_fer2013.py output directory (any feature set it holds); N Training faces drawn with a fixed seed, and N
more that the int8 model must classify like Keras (at least 95 % the same class) or nothing is written. Its default
name is MODEL.int8.onnx: the float twin MODEL.onnx, which the prediction commands pick up by themselves, stays the
graph that matches Keras within 1e-4; --backend int8 (predict.py, predict_from_video.py, serve.py) runs the int8 file,
and so does --model MODEL.int8.onnx.

Output on stdout: ``exported MODEL to PATH (metadata: PATH.meta.json)``. The exported model takes the same inputs
as the Keras one ((n, 48, 48, 1) float32 grey levels 0..255 [+ (n, d) float32 features]) and returns (n, k)
probabilities. Exit codes (errors.py): 0 ok, 1 unreadable or non-Keras model, or a converter failure, 2 bad command
line, 130 interrupted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from errors import EXIT_OK, run_main
from models.export import EXPORT_FORMATS
from models.quantize import CALIBRATION_FACES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="saved Keras model (RUN_DIR/model.keras)")
    parser.add_argument("--format", choices=EXPORT_FORMATS, required=True, help="onnx or tflite")
    parser.add_argument("--out", type=Path,
                        help="exported file (default: beside the model, MODEL with the format's suffix; "
                        "MODEL.int8.onnx with --int8)")
    parser.add_argument("--int8", action="store_true",
                        help="ONNX only: quantize to int8 (needs --calibration)")
    parser.add_argument("--calibration", type=Path, metavar="DATA",
                        help="Training faces for --int8: a FER2013 csv(.gz) or a convert_fer2013.py output directory")
    parser.add_argument("--calibration-faces", type=int, default=CALIBRATION_FACES, metavar="N",
                        help="faces that set the int8 ranges, and as many more to check it against Keras "
                        "(default: %(default)s)")
    args = parser.parse_args(argv)
    if args.int8 and args.format != "onnx":
        parser.error(f"--int8 is for --format onnx, not {args.format}")
    if args.int8 and args.calibration is None:
        parser.error("--int8 needs --calibration DATA (a FER2013 csv or a convert_fer2013.py output directory)")
    if args.calibration is not None and not args.int8:
        parser.error("--calibration is only used with --int8")
    if args.calibration_faces < 1:
        parser.error(f"--calibration-faces must be at least 1, got {args.calibration_faces}")
    if args.out is not None and args.out.resolve() == args.model.resolve():
        parser.error(f"--out {args.out} is the model itself: choose another path")
    return args


def run(args: argparse.Namespace) -> int:
    from models.export import export_model, export_quantization, export_sidecar_path

    path = export_model(args.model, args.format, args.out,
                        int8_calibration=args.calibration if args.int8 else None,
                        calibration_faces=args.calibration_faces)
    print(f"exported {args.model} to {path} (metadata: {export_sidecar_path(path)})")
    if args.int8:
        q = export_quantization(path)
        print(f"int8: {q['top1_agreement_vs_keras']:.1%} of {q['check_faces']} held-out Training faces classified "
              f"as Keras does (largest probability difference {q['max_abs_diff_vs_keras']:.3f})")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tf_logging import quiet_tensorflow

    quiet_tensorflow()  # the converters need TensorFlow: import it without its start-up noise
    return run_main("export.py", lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
