"""Write (or check) a model's ``training_lineage`` from its run folders' configs: the bundled model's, by default.

The lineage is the list of ``train.py`` commands that made the model, ancestors first (``training.lineage``): the run
folder of the model, then those of every ``--init-from`` and ``--teacher`` model it names, found relative to --root.
The metadata is rewritten both inside the ``.keras`` file and in its ``.meta.json`` sidecar (atomically, weights
untouched).

    # after training runs/fernet16_e80 ... runs/fernet16_kd2 (docs/BUNDLED_MODEL.md), from the repository root
    python experiments/bundled_lineage.py runs/fernet16_kd2 --data fer2013_features
    python experiments/bundled_lineage.py runs/fernet16_kd2 --data fer2013_features --check   # exit 1 if it differs
    # and the run's PrivateTest accuracy (train.py --evaluate's metrics.json) into the metadata's metrics
    python experiments/bundled_lineage.py runs/fernet16_kd2 --data fer2013_features \
        --metrics runs/fernet16_kd2/metrics.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from models.io import METADATA_NAME, sidecar_path  # noqa: E402
from training.lineage import LineageError, training_lineage  # noqa: E402

BUNDLED = ROOT / "models" / "pretrained" / "fer_model.keras"


def write_lineage(model: Path, lineage: list[str], metrics: dict | None = None) -> None:
    """Replace ``training_lineage`` (and ``training_command``, its last entry) in the metadata inside ``model`` and
    in its sidecar (the same text, as ``models.io.save_model`` writes them), each written atomically; every other
    archive entry is copied as is. ``metrics`` (e.g. ``private_test_accuracy``) are merged into its ``metrics``."""
    tmp, tmp_side = model.with_name(f".{model.name}.partial"), model.with_name(f".{model.stem}.meta.partial")
    try:
        with zipfile.ZipFile(model) as source, zipfile.ZipFile(tmp, "w") as target:
            metadata = json.loads(source.read(METADATA_NAME))
            metadata["training_lineage"] = lineage
            metadata["training_command"] = lineage[-1]  # the model's own run
            metadata["metrics"] = {**metadata.get("metrics", {}), **(metrics or {})}
            text = json.dumps(metadata, indent=1)
            for info in source.infolist():
                target.writestr(info, text.encode() if info.filename == METADATA_NAME else source.read(info))
        tmp_side.write_text(text + "\n")
        os.replace(tmp, model)
        os.replace(tmp_side, sidecar_path(model))
    finally:
        tmp.unlink(missing_ok=True)
        tmp_side.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the run folder that trained the model (e.g. runs/fernet16_kd2)")
    parser.add_argument("--data", required=True, help="the converted directory to name in the commands")
    parser.add_argument("--model", type=Path, default=BUNDLED, help=f"the model to write it into (default {BUNDLED})")
    parser.add_argument("--root", type=Path, default=Path("."),
                        help="where the runs were started: model paths in their configs are relative to it (default .)")
    parser.add_argument("--metrics", type=Path, default=None,
                        help="the run's metrics.json (train.py --evaluate): its PrivateTest accuracy goes into "
                        "the metadata")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if the model's lineage differs")
    args = parser.parse_args(argv)
    try:
        lineage = training_lineage(args.run, args.data, root=args.root)
        with zipfile.ZipFile(args.model) as archive:
            current = json.loads(archive.read(METADATA_NAME)).get("training_lineage")
        metrics = None
        if args.metrics:
            metrics = {"private_test_accuracy": float(json.loads(args.metrics.read_text())["private_test_accuracy"])}
    except (LineageError, OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        print(f"bundled_lineage.py: error: {err}", file=sys.stderr)
        return 1
    if args.check:
        same = current == lineage  # training_command is written with it
        print(f"{args.model}: training_lineage {'matches' if same else 'differs from'} {args.run}'s run folders")
        return 0 if same else 1
    write_lineage(args.model, lineage, metrics)
    print(f"wrote {len(lineage)} commands to {args.model}'s training_lineage:", *lineage, sep="\n  ")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
