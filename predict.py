"""Predict the facial expression of every face in photos.

Faces are found (dlib's HOG detector, then its CNN detector where HOG finds nothing: --detector), cropped as FER2013
frames them (or aligned along their landmarks: --align), and classified by a model saved by train.py; the features
it was trained with are read from the model's metadata. The face flags and their defaults are inference.faces'.

    python predict.py --image photo.jpg --model runs/A/model.keras
    python predict.py --image photos/ group.png --json > predictions.json
    python predict.py --image photo.jpg --output annotated.png --plot bars.png
    python predict.py --image face48.png --assume-face          # the whole image is one face (48x48 crops)
    python predict.py --image photos/ --csv faces.csv           # one row per face (and per faceless/unreadable file)
    python predict.py --image photos/ --min-confidence 0.5 --json  # below 0.5: 'uncertain' (probabilities kept)

The classifier runs on ONNX Runtime when the model's ONNX twin (``model.onnx`` + ``model.onnx.meta.json``) sits
beside the ``.keras`` file, as it does for the bundled model: TensorFlow is not imported, so one photo costs about
0.4 s of CPU and 150 MB instead of 5 s and 900 MB. A ``.keras`` model without a twin runs through TensorFlow (a
note says how to make the twin: ``python export.py --model MODEL.keras --format onnx``); so do the peer
``.hdf5`` models. ``--model`` also takes an ``.onnx`` file directly.

Prints one line per face: ``PATH  box=(x, y, w, h)  Emotion  confidence``. Exit codes (errors.py): 0 every image
had a face, 3 some image had none, 1 some file could not be read or another error occurred (the other files are
still processed), 2 a bad command line, 130 interrupted. With several images, --output and --plot name folders
with one file per image (``<stem>_annotated.png``; ``<stem>_<ext>_annotated.png`` where two inputs share a stem).
An output that is an input (even through a symlink) is refused, and every file is written under a temporary name
and renamed when complete. Images over --max-pixels are refused from their header, before decoding.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_NO_FACE, EXIT_OK, UserError
from inference.backends import add_backend_argument
from inference.classifiers import add_tta_argument
from inference.faces import FacePipeline, add_face_arguments, pipeline_from_args
from inference.image_limits import DEFAULT_MAX_PIXELS


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", nargs="+", required=True, metavar="PATH", help="image files and/or folders")
    add_face_arguments(parser, FacePipeline.for_photos())
    add_backend_argument(parser)
    add_tta_argument(parser)
    parser.add_argument("--min-confidence", type=float, default=0.0, metavar="P",
                        help="label a face 'uncertain' when its top probability is below P (0..1; the JSON keeps "
                        "every probability; calibrate.py makes P mean what it says). Default 0: always a class")
    parser.add_argument("--json", action=argparse.BooleanOptionalAction, default=False, help="print a JSON list")
    parser.add_argument("--output", type=Path, help="annotated image (a folder when several images)")
    parser.add_argument("--plot", type=Path, help="probability bar chart per face (a folder when several images)")
    parser.add_argument(
        "--max-pixels",
        type=float,
        default=DEFAULT_MAX_PIXELS / 1e6,
        metavar="MP",
        help="refuse images over this many megapixels, read from the header before decoding (default %(default)g)",
    )
    parser.add_argument(
        "--verbose", action=argparse.BooleanOptionalAction, default=False, help="show TensorFlow's own logging"
    )
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
    if not 0.0 <= args.min_confidence <= 1.0:
        parser.error(f"--min-confidence {args.min_confidence} must be between 0 and 1")
    if not args.max_pixels > 0:
        parser.error(f"--max-pixels {args.max_pixels} must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("\ninterrupted; files already written are complete, the rest were not started", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    from inference.csv_table import face_rows, unreadable_row, write_csv
    from inference.images import iter_image_files
    from inference.outputs import atomic_path, plan_outputs

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
        annotated, plots = plan_outputs(files, args.output, args.plot)
        if args.csv is not None:  # even with --overwrite, the table never replaces a photo or another output
            from inference.outputs import check_not_inputs

            taken = [("--output", p) for p in annotated if p] + [("--plot", p) for p in plots if p]
            check_not_inputs([*taken, ("--csv", args.csv)], files)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    if args.model is not None and args.model.suffix.lower() not in (".h5", ".hdf5"):
        from models.io import read_metadata

        try:  # a missing, refused (.joblib) or foreign model file fails now, not after TensorFlow's import
            read_metadata(args.model)
        except UserError as err:
            print(f"error: --model {err}", file=sys.stderr)
            return EXIT_ERROR
    from inference.backends import needs_tensorflow
    from inference.classifiers import DEFAULT_MODEL_PATH
    from tf_logging import quiet_tensorflow

    if needs_tensorflow(args.model or DEFAULT_MODEL_PATH, args.backend):  # an ONNX twin needs no TensorFlow
        quiet_tensorflow(args.verbose)
    from inference.calibration import mark_uncertain
    from inference.drawing import draw_predictions, plot_probabilities
    from inference.images import load_image, to_bgr
    from inference.predictor import FacePredictor

    max_pixels = int(args.max_pixels * 1e6)
    try:
        predictor = FacePredictor(args.model, pipeline=pipeline_from_args(args), backend=args.backend, tta=args.tta)
    except (UserError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR

    records, rows, errors, faceless = [], [], 0, 0
    for path, annotated_path, plot_path in zip(files, annotated, plots, strict=True):
        try:
            image = load_image(path, max_pixels)
            predictions = [mark_uncertain(p, args.min_confidence) for p in predictor.predict(image)]
        except (UserError, ValueError) as err:
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
            if annotated_path is not None:
                import cv2

                with atomic_path(annotated_path) as tmp:
                    if not cv2.imwrite(str(tmp), draw_predictions(to_bgr(image), predictions)):
                        raise OSError(f"{annotated_path}: cannot write an image here (unwritable folder?)")
            if plot_path is not None:
                with atomic_path(plot_path) as tmp:
                    plot_probabilities(predictions, tmp, title=path.name)
        except (UserError, OSError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            errors += 1
    if args.json:
        print(json.dumps(records, indent=1, allow_nan=False))
    if args.csv is not None:
        try:
            args.csv.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(args.csv) as tmp:
                write_csv(tmp, rows, predictor.class_names)
        except OSError as err:
            print(f"error: --csv {args.csv}: cannot write ({err.strerror or err})", file=sys.stderr)
            return EXIT_ERROR
    if errors:
        return EXIT_ERROR
    return EXIT_NO_FACE if faceless else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
