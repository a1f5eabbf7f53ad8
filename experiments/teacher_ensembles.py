"""Which models to distil from: every ensemble of the given models, scored on PublicTest and on the wild sets.

A student learns what its teacher knows, so the teacher is chosen like any hyperparameter: on PublicTest. Each
ensemble averages its members' probabilities (as ``train.py --teacher A B C`` does), here on each face as it is,
without the flip views the training teacher adds. The wild columns run bench_wild.py's photo pipeline (its
``--cache`` folder makes a second run take seconds) and show whether an ensemble's knowledge holds on real photos;
PrivateTest is not read here: a teacher is not a candidate.

``--logit-adjustment TAU ...`` adds rows for each single model with its log-probabilities shifted by ``-TAU x log``
of FER2013's Training class frequencies (Menon et al. 2021, "Long-tail learning via logit adjustment"): what a
model predicts when every class is taken as equally likely, as in the class-balanced wild sets.

    python experiments/teacher_ensembles.py --models models/pretrained/fer_model.keras \\
        experiments/teachers/fernet24_kd_e80.keras ../shared/peers/*.hdf5 --cache /tmp/wild_faces
    python experiments/teacher_ensembles.py --models models/pretrained/fer_model.keras --max-size 1 \\
        --logit-adjustment 0.25 0.5 1
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
SHARED = ROOT.parent / "shared"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, nargs="+", required=True,
                        help="models of this project (.keras) or peers (.hdf5) with FER2013's 7 classes")
    parser.add_argument("--fer2013-csv", type=Path, default=SHARED / "data" / "fer2013.csv.gz")
    parser.add_argument("--wild-dir", type=Path, default=SHARED / "data" / "wild")
    parser.add_argument("--sets", nargs="*", default=["sfew_frames", "lfw_web"],
                        help="wild sets for the extra columns (none: PublicTest only)")
    parser.add_argument("--cache", type=Path, metavar="DIR", help="bench_wild.py's folder of framed faces")
    parser.add_argument("--max-size", type=int, default=4, help="largest ensemble scored (default %(default)s)")
    parser.add_argument("--logit-adjustment", type=float, nargs="*", default=[], metavar="TAU",
                        help="also each single model with its logits shifted by -TAU x log(Training class share)")
    args = parser.parse_args(argv)
    for path in (*args.models, args.fer2013_csv):
        if not path.is_file():
            parser.error(f"{path}: no such file")
    if args.max_size < 1:
        parser.error(f"--max-size {args.max_size} must be >= 1")
    return args


def probabilities(classifier, faces: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate([classifier(faces[i:i + batch]) for i in range(0, len(faces), batch)])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bench_wild import frame_faces, load_models, wild_files

    from data.augment import resize_faces
    from data.fer2013 import load_fer2013
    from inference.faces import FacePipeline

    models = load_models(args.models)
    fer = load_fer2013(args.fer2013_csv).splits
    public = fer["PublicTest"]
    prior = np.bincount(np.asarray(fer["Training"].labels), minlength=7) / len(fer["Training"].labels)
    columns = {"PublicTest": (np.asarray(public.labels), None)}
    probs: dict[str, dict[str, np.ndarray]] = {name: {} for name, _ in models}
    for name, classifier in models:
        probs[name]["PublicTest"] = probabilities(classifier, resize_faces(public.images, classifier.input_size))
    pipeline = FacePipeline.for_photos()
    for set_name in args.sets:
        files = wild_files(args.wild_dir / set_name, None)
        framed = frame_faces(files, pipeline, sorted({c.input_size for _, c in models}), args.cache, set_name)
        columns[set_name] = (np.array([label for _, label in files]), framed.found)
        for name, classifier in models:
            probs[name][set_name] = probabilities(classifier, framed.crops[classifier.input_size])

    def accuracy(p: np.ndarray, column: str) -> float:
        labels, found = columns[column]
        predicted = p.argmax(1) if found is None else np.where(found, p.argmax(1), -1)
        return 100 * float((predicted == labels).mean())

    def row(label: str, cells: list[float]) -> str:
        return f"| {label} | " + " | ".join(f"{v:.1f} %" for v in cells) + " |"

    head = "| teacher | " + " | ".join(columns) + " |"
    lines = [head, "|" + " --- |" * (len(columns) + 1)]
    names = [name for name, _ in models]
    short = {name: name.split(" (")[0] for name in names}  # "bundled (fer_model.keras)" -> "bundled"
    for size in range(1, min(args.max_size, len(names)) + 1):
        for members in itertools.combinations(names, size):
            cells = [accuracy(np.mean([probs[m][c] for m in members], axis=0), c) for c in columns]
            lines.append(row(" + ".join(short[m] for m in members), cells))
    for name in names:
        for tau in args.logit_adjustment:
            cells = [accuracy(np.log(np.clip(probs[name][c], 1e-12, 1)) - tau * np.log(prior), c) for c in columns]
            lines.append(row(f"{short[name]}, logit adjustment {tau:g}", cells))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
