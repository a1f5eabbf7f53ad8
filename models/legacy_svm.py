"""Convert an SVM baseline saved by an older version (``model.joblib``, a pickle) to the safe ``.skops`` format.

A pickle can run any code while it loads, so the toolkit refuses ``.joblib`` files everywhere. This command
is the one place that unpickles one, and only with ``--trust``: run it on a file you made yourself.

    python -m models.legacy_svm runs/svm/model.joblib --trust            # -> runs/svm/model.skops (+ .meta.json)
    python -m models.legacy_svm old.joblib --trust --out runs/svm/model.skops

Exit codes follow errors.py: 0 converted, 1 unreadable or not an SVM of this toolkit, 2 bad command line
(including a missing --trust).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from errors import EXIT_ERROR, EXIT_OK, UserError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("joblib", type=Path, help="the legacy model.joblib")
    parser.add_argument("--out", type=Path, help="the .skops to write (default: beside the input, same stem)")
    parser.add_argument(
        "--trust",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="confirm that you made this file (unpickling it runs whatever code it holds)",
    )
    args = parser.parse_args(argv)
    if not args.trust:
        parser.error(f"{args.joblib}: unpickling can run code; pass --trust only for a file you made yourself")
    if args.joblib.suffix != ".joblib":
        parser.error(f"{args.joblib}: expected a .joblib file")
    if args.out is None:
        args.out = args.joblib.with_suffix(".skops")
    if args.out.suffix != ".skops":
        parser.error(f"--out {args.out}: must end in .skops")
    return args


def convert_legacy(source: Path, target: Path) -> Path:
    """Unpickle ``source`` (trusted by the caller) and save its pipeline and metadata to ``target`` (.skops)."""
    import joblib

    from models.io import save_model
    from models.svm import SvmModel

    if not source.is_file():
        raise UserError(f"{source}: no such file")
    try:
        blob = joblib.load(source)
    except Exception as err:  # a damaged pickle raises anything
        raise UserError(f"{source}: not a readable joblib file ({type(err).__name__}: {err})") from None
    if not (isinstance(blob, dict) and {"pipeline", "n_classes", "metadata"} <= set(blob)):
        raise UserError(f"{source}: not an SVM saved by this toolkit (expected pipeline, n_classes, metadata)")
    metadata = {k: v for k, v in blob["metadata"].items() if k != "format_version"}
    return save_model(SvmModel(blob["pipeline"], int(blob["n_classes"])), target, metadata)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        path = convert_legacy(args.joblib, args.out)
    except (UserError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    print(f"wrote {path}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
