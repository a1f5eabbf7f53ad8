"""Score a saved model: on PrivateTest/PublicTest of a converted directory, or on a folder of labelled photos.

    # PrivateTest and PublicTest of the FER2013 protocol: RUN/metrics.json, confusion matrices, per-class reports
    python evaluate.py --model runs/b/model.keras --data out/fer2013
    # one split, with flip test-time augmentation, files written elsewhere
    python evaluate.py --model runs/b/model.keras --data out/fer2013 --split PrivateTest --tta --out reports/b
    # ten-crop TTA: five 46x46 crops and their mirrors, ten model calls per face
    python evaluate.py --model runs/b/model.keras --data out/fer2013 --split PublicTest --tta ten-crop
    # photos: DIR/<class>/*.jpg (happy/, Sad/, anger/ ...) through predict.py's face pipeline
    python evaluate.py --model runs/b/model.keras --images-dir photos/ --detector dlib --no-align --out reports/photos
    # photos that are already face crops
    python evaluate.py --model models/pretrained/fer_model.keras --images-dir crops/ --assume-face

Output on stdout: one line per split, ``PrivateTest accuracy 0.6612 (3589 faces)``, or for photos
``accuracy 0.7100 on 100 images (3 without a face)``, then where the metrics were written (default: the model's
folder). Exit codes (errors.py): 0 ok, 1 unreadable model/data or a model that does not fit the data, 2 bad command
line, 130 interrupted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from errors import EXIT_OK, run_main
from inference.faces import FacePipeline, add_face_arguments, pipeline_from_args
from parameters import TTA_MODES

SPLITS = ("PrivateTest", "PublicTest")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True,
                        help="saved model: RUN_DIR/model.keras (or model.skops for the SVM baseline)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="converted directory (convert_fer2013.py --out)")
    source.add_argument("--images-dir", type=Path,
                        help="a folder of labelled photos, one subfolder per class (names matched loosely)")
    parser.add_argument("--split", choices=SPLITS, action="append",
                        help="with --data: the split to score, repeatable (default both; PrivateTest is for "
                        "reporting, never for choosing)")
    parser.add_argument("--tta", nargs="?", const="flip", default=None, choices=TTA_MODES,
                        help="test-time augmentation; --tta alone or --tta flip averages each face's "
                        "probabilities with its mirror image's, --tta ten-crop over five crops and their mirrors "
                        "(raw-face models; ten model calls per face) (default: none)")
    add_face_arguments(parser, FacePipeline.for_photos(), model=False)  # with --images-dir: predict.py's pipeline
    parser.add_argument("--out", type=Path, help="folder for metrics and confusion matrices (default: the model's)")
    parser.add_argument("--verbose", type=int, choices=[0, 1], default=1,
                        help="0: only the summary line; 1: reports and a progress bar (default)")
    args = parser.parse_args(argv)
    if args.images_dir is not None and args.split:
        parser.error("--split goes with --data, not --images-dir")
    if args.data is not None and pipeline_from_args(args) != FacePipeline.for_photos():
        parser.error("the face pipeline flags (--detector, --assume-face, --align ...) go with --images-dir, not "
                     "--data (its faces are cropped)")
    return args


def run(args: argparse.Namespace) -> int:
    out = args.out or args.model.parent
    if args.images_dir is not None:
        from inference.folder_eval import evaluate_folder_run

        metrics = evaluate_folder_run(args.model, args.images_dir, out, pipeline=pipeline_from_args(args),
                                      verbose=args.verbose, tta=args.tta)
        print(f"accuracy {metrics['accuracy']:.4f} on {metrics['n_images']} images "
              f"({metrics['n_no_face']} without a face); metrics: {out / 'folder_metrics.json'}")
        return EXIT_OK
    from inference.evaluation import evaluate_run

    splits = tuple(dict.fromkeys(args.split or SPLITS))  # in the order given, once each
    metrics = evaluate_run(args.model, args.data, out, tta=args.tta, splits=splits, verbose=args.verbose)
    for split in splits:
        print(f"{split} accuracy {metrics[split]['accuracy']:.4f} ({metrics[split]['n']} faces)")
    print(f"metrics: {out / 'metrics.json'}")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.data is not None:  # Keras scores the splits (photos may run on the model's ONNX twin instead)
        from tf_logging import quiet_tensorflow

        quiet_tensorflow()
    return run_main("evaluate.py", lambda: run(args))


if __name__ == "__main__":
    raise SystemExit(main())
