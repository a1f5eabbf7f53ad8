"""Export a saved Keras model to ONNX or TFLite for deployment, with its metadata beside it.

    # runs/b/model.onnx + runs/b/model.onnx.meta.json (class names, feature set, inputs)
    python export.py --model runs/b/model.keras --format onnx
    # TFLite to a path of your choice
    python export.py --model models/pretrained/fer_model.keras --format tflite --out deploy/fer.tflite

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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="saved Keras model (RUN_DIR/model.keras)")
    parser.add_argument("--format", choices=EXPORT_FORMATS, required=True, help="onnx or tflite")
    parser.add_argument("--out", type=Path,
                        help="exported file (default: beside the model, MODEL with the format's suffix)")
    args = parser.parse_args(argv)
    if args.out is not None and args.out.resolve() == args.model.resolve():
        parser.error(f"--out {args.out} is the model itself: choose another path")
    return args


def run(args: argparse.Namespace) -> int:
    from models.export import export_model, export_sidecar_path

    path = export_model(args.model, args.format, args.out)
    print(f"exported {args.model} to {path} (metadata: {export_sidecar_path(path)})")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tf_logging import quiet_tensorflow

    quiet_tensorflow()  # the converters need TensorFlow: import it without its start-up noise
    return run_main("export.py", lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
