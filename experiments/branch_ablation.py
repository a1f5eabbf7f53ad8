"""Which branch of a two-input model (image + features) carries its predictions?

For each model, PublicTest accuracy (a) as is, (b) with every image replaced by one constant grey face (the image
branch silenced), (c) with every feature vector replaced by the mean feature vector of the Training split
(the feature branch silenced). If (b) equals (a), the image branch contributes nothing.

    python experiments/branch_ablation.py --data fer2013_features runs/B/model.keras runs/B_modern2/model.keras
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path, help="saved .keras models with a feature input")
    parser.add_argument("--data", type=Path, required=True, help="converted directory (convert_fer2013.py --out)")
    parser.add_argument("--split", default="PublicTest", choices=["PublicTest", "PrivateTest"])
    args = parser.parse_args(argv)

    from data.splits import load_split, model_inputs
    from models.io import load_model

    splits = {}  # feature set -> (the split's data, the Training mean feature vector), loaded once
    print("| model | feature set | as is | image constant | features at mean |")
    print("| --- | --- | --- | --- | --- |")
    for path in args.models:
        model, meta = load_model(path)
        feature_set = meta["feature_set"]
        if feature_set == "raw":
            print(f"{path}: raw pixels only, nothing to ablate", file=sys.stderr)
            return 2
        if feature_set not in splits:
            training_mean = load_split(args.data, "Training", feature_set).features.mean(axis=0, keepdims=True)
            splits[feature_set] = load_split(args.data, args.split, feature_set), training_mean
        data, mean = splits[feature_set]
        constant = np.full_like(data.images, int(data.images.mean()))
        variants = [(data.images, data.features), (constant, data.features),
                    (data.images, np.repeat(mean, len(data.labels), axis=0))]
        accuracy = [np.mean(model.predict(model_inputs(i, f), batch_size=256, verbose=0).argmax(1) == data.labels)
                    for i, f in variants]
        print(f"| {path} | {feature_set} | " + " | ".join(f"{100 * a:.1f} %" for a in accuracy) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
