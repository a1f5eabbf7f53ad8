"""Predict the facial expression of every face in photos.

Faces are found (dlib HOG detector, or --detector haar), cropped as FER2013 frames them, and classified by a model
saved by train.py; the features it was trained with are read from the model's metadata.

    python predict.py --image photo.jpg --model runs/A/model.keras
    python predict.py --image photos/ group.png --json > predictions.json
    python predict.py --image photo.jpg --output annotated.png --plot bars.png
    python predict.py --image face48.png --assume-face          # the whole image is one face (48x48 crops)
    python predict.py --image photos/ --min-confidence 0.5 --json  # below 0.5: 'uncertain' (probabilities kept)

Prints one line per face: ``PATH  box=(x, y, w, h)  Emotion  confidence``. Exit code 0 when every image had a
face, 2 when some image had none, 1 when some file could not be read or another error occurred (the other files
are still processed). With several images, --output and --plot name folders (one file per image).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_NO_FACE = 0, 1, 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", nargs="+", required=True, metavar="PATH", help="image files and/or folders")
    parser.add_argument(
        "--model", type=Path, help="model saved by train.py (.keras) or a peer .hdf5; default: the bundled model"
    )
    parser.add_argument("--detector", choices=("dlib", "haar"), default="dlib", help="face detector (default dlib)")
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
    parser.add_argument("--min-confidence", type=float, default=0.0, metavar="P",
                        help="label a face 'uncertain' when its top probability is below P (0..1; the JSON keeps "
                        "every probability; calibrate.py makes P mean what it says). Default 0: always a class")
    parser.add_argument("--json", action=argparse.BooleanOptionalAction, default=False, help="print a JSON list")
    parser.add_argument("--output", type=Path, help="annotated image (a folder when several images)")
    parser.add_argument("--plot", type=Path, help="probability bar chart per face (a folder when several images)")
    args = parser.parse_args(argv)
    if args.detect_size < 0:
        parser.error(f"--detect-size {args.detect_size} must be >= 0")
    if not 0.0 <= args.min_confidence <= 1.0:
        parser.error(f"--min-confidence {args.min_confidence} must be between 0 and 1")
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
    from inference.calibration import mark_uncertain
    from inference.drawing import draw_predictions, plot_probabilities
    from inference.predictor import FacePredictor, PredictorError, iter_image_files, load_image, to_bgr

    files = iter_image_files(args.image)
    if not files:
        print(f"error: no image files in {' '.join(args.image)}", file=sys.stderr)
        return EXIT_ERROR
    try:
        predictor = FacePredictor(
            args.model,
            detector=args.detector,
            assume_face=args.assume_face,
            detect_size=args.detect_size,
            upsample=args.upsample,
        )
    except (PredictorError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR

    records, errors, faceless = [], 0, 0
    for path in files:
        try:
            image = load_image(path)
            predictions = [mark_uncertain(p, args.min_confidence) for p in predictor.predict(image)]
        except (PredictorError, ValueError) as err:
            print(f"error: {err}" if str(path) in str(err) else f"error: {path}: {err}", file=sys.stderr)
            errors += 1
            continue
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
    if errors:
        return EXIT_ERROR
    return EXIT_NO_FACE if faceless else EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
