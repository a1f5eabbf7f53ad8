"""Predict the facial expression of every face in photos.

Faces are found (dlib HOG detector, or --detector haar), cropped as FER2013 frames them, and classified by a model
saved by train.py; the features it was trained with are read from the model's metadata.

    python predict.py --image photo.jpg --model runs/A/model.keras
    python predict.py --image photos/ group.png --json > predictions.json
    python predict.py --image photo.jpg --output annotated.png --plot bars.png
    python predict.py --image face48.png --assume-face          # the whole image is one face (48x48 crops)
    python predict.py --image photos/ --csv faces.csv           # one row per face (and per faceless/unreadable file)

The classifier runs on ONNX Runtime when the model's ONNX twin (``model.onnx`` + ``model.onnx.meta.json``) sits
beside the ``.keras`` file, as it does for the bundled model: TensorFlow is not imported, so one photo costs about
0.4 s of CPU and 150 MB instead of 5 s and 900 MB. A ``.keras`` model without a twin runs through TensorFlow (a
note says how to make the twin: ``python train.py --export onnx --model-path MODEL.keras``); so do the peer
``.hdf5`` models. ``--model`` also takes an ``.onnx`` file directly.

Prints one line per face: ``PATH  box=(x, y, w, h)  Emotion  confidence``. Exit code 0 when every image had a
face, 2 when some image had none, 1 when some file could not be read or another error occurred (the other files
are still processed). With several images, --output and --plot name folders (one file per image).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from inference.backends import BACKENDS

EXIT_OK, EXIT_ERROR, EXIT_NO_FACE = 0, 1, 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", nargs="+", required=True, metavar="PATH", help="image files and/or folders")
    parser.add_argument(
        "--model",
        type=Path,
        help="model saved by train.py (.keras; its .onnx twin is used when present), an .onnx export, or a peer "
        ".hdf5; default: the bundled model",
    )
    parser.add_argument("--detector", choices=("dlib", "haar"), default="dlib", help="face detector (default dlib)")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="classifier runtime: auto = the model's ONNX twin when present, else Keras; onnx or keras insist",
    )
    parser.add_argument(
        "--assume-face",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="treat each whole image as one face (no detection)",
    )
    parser.add_argument(
        "--detect-size",
        type=int,
        default=1024,
        metavar="PX",
        help="detect on a copy at most this many pixels on its longer side, full size if none found (0: full)",
    )
    parser.add_argument("--upsample", type=int, default=0, help="dlib upsampling steps, for faces under ~80 px")
    parser.add_argument("--json", action=argparse.BooleanOptionalAction, default=False, help="print a JSON list")
    parser.add_argument("--output", type=Path, help="annotated image (a folder when several images)")
    parser.add_argument("--plot", type=Path, help="probability bar chart per face (a folder when several images)")
    parser.add_argument(
        "--csv",
        type=Path,
        metavar="FILE",
        help="write a table: one row per face (image, face, box, emotion, confidence, a column per class); "
        "images without a face and unreadable files get a row that says so",
    )
    parser.add_argument(
        "--overwrite", action=argparse.BooleanOptionalAction, default=False, help="replace an existing --csv file"
    )
    args = parser.parse_args(argv)
    if args.detect_size < 0:
        parser.error(f"--detect-size {args.detect_size} must be >= 0")
    if args.upsample < 0:
        parser.error(f"--upsample {args.upsample} must be >= 0")
    return args


def _destination(target: Path, image: Path, n_images: int, suffix: str) -> Path:
    """``target`` itself for one image, else ``target/<stem><suffix>.png`` (a folder)."""
    if n_images == 1 and target.suffix:
        return target
    return target / f"{image.stem}{suffix}.png"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from inference.csv_table import face_rows, unreadable_row, write_csv
    from inference.drawing import draw_predictions, plot_probabilities
    from inference.predictor import FacePredictor, PredictorError, iter_image_files, load_image, to_bgr

    files = iter_image_files(args.image)
    if not files:
        print(f"error: no image files in {' '.join(args.image)}", file=sys.stderr)
        return EXIT_ERROR
    if args.csv is not None:
        if args.csv.is_dir():
            print(f"error: --csv {args.csv}: is a folder, not a file name", file=sys.stderr)
            return EXIT_ERROR
        if args.csv.exists() and not args.overwrite:
            print(f"error: --csv {args.csv} exists; pass --overwrite to replace it", file=sys.stderr)
            return EXIT_ERROR
    try:
        predictor = FacePredictor(
            args.model,
            detector=args.detector,
            assume_face=args.assume_face,
            detect_size=args.detect_size,
            upsample=args.upsample,
            backend=args.backend,
        )
    except (PredictorError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR

    records, rows, errors, faceless = [], [], 0, 0
    for path in files:
        try:
            image = load_image(path)
            predictions = predictor.predict(image)
        except (PredictorError, ValueError) as err:
            message = str(err) if str(path) in str(err) else f"{path}: {err}"
            print(f"error: {message}", file=sys.stderr)
            rows.append(unreadable_row(path, message))
            errors += 1
            continue
        rows += face_rows(path, predictions, predictor.class_names)
        if not predictions:
            print(f"{path}: no face found", file=sys.stderr)
            faceless += 1
        for pred in predictions:
            records.append({"image": str(path), **pred.to_dict()})
            if not args.json:
                print(f"{path}  box={pred.box}  {pred.emotion}  {pred.confidence:.3f}")
        try:
            if args.output:
                out = _destination(args.output, path, len(files), "_annotated")
                out.parent.mkdir(parents=True, exist_ok=True)
                import cv2

                if not cv2.imwrite(str(out), draw_predictions(to_bgr(image), predictions)):
                    raise OSError(f"{out}: cannot write an image (unknown extension or unwritable folder)")
            if args.plot:
                plot_probabilities(
                    predictions, _destination(args.plot, path, len(files), "_probabilities"), title=path.name
                )
        except (OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            errors += 1
    if args.json:
        print(json.dumps(records, indent=1))
    if args.csv is not None:
        try:
            args.csv.parent.mkdir(parents=True, exist_ok=True)
            write_csv(args.csv, rows, predictor.class_names)
        except OSError as err:
            print(f"error: --csv {args.csv}: cannot write ({err.strerror or err})", file=sys.stderr)
            return EXIT_ERROR
    if errors:
        return EXIT_ERROR
    return EXIT_NO_FACE if faceless else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
