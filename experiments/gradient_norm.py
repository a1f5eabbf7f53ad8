"""How hard does gradient clipping bite? Global gradient norm of a freshly built Model A/B on Training batches.

The 2016 code (tflearn's ``DNN``) clipped every step's gradients to a global L2 norm of 5.0, so a step is scaled by
``min(1, 5 / norm)``. For standardised and for unscaled (2016-style) landmark/HOG features this prints the mean
global norm at initialisation over ``--batches`` random Training batches, the resulting scale factor, and the
feature branch's share of the norm (its two FC layers). A large share means the feature inputs set the step size
of the whole network.

    python experiments/gradient_norm.py --data fer2013_features
    python experiments/gradient_norm.py --data fer2013_features --model A --features landmarks --batches 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from parameters import FEATURE_SETS, INITIALIZERS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="converted directory (convert_fer2013.py --out)")
    parser.add_argument("--model", choices=["A", "B"], default="B")
    parser.add_argument("--features", default="landmarks_hog_windows",
                        choices=[name for name in FEATURE_SETS if name != "raw"])
    parser.add_argument("--batches", type=int, default=5, help="random Training batches to average (default 5)")
    parser.add_argument("--batch-size", type=int, default=128, help="as the original (default 128)")
    parser.add_argument("--clipnorm", type=float, default=5.0, help="the clipping to report against (default 5.0)")
    parser.add_argument("--initializer", choices=list(INITIALIZERS), default="keras",
                        help="weight initialisation: keras (Glorot, default) or tflearn (the 2016 code's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.batches < 1 or args.batch_size < 1 or args.clipnorm <= 0:
        parser.error("--batches and --batch-size must be >= 1, --clipnorm > 0")
    return args


def feature_branch_variables(model) -> list:
    """The trainable variables of the two FC layers that read the ``feature_norm`` output (FC 1024 -> FC merge)."""
    found, layer = [], model.get_layer("feature_norm")
    for _ in range(2):
        (layer,) = [other for other in model.layers if getattr(other, "input", None) is layer.output]
        found += layer.trainable_variables
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import keras
    import tensorflow as tf

    from data.splits import feature_statistics, load_split, model_inputs
    from models import build_model
    from training.loop import set_feature_statistics

    data = load_split(args.data, "Training", args.features)
    n_classes = int(data.labels.max()) + 1
    rng = np.random.default_rng(args.seed)
    batches = [rng.choice(len(data.labels), min(args.batch_size, len(data.labels)), replace=False)
               for _ in range(args.batches)]
    eye = np.eye(n_classes, dtype=np.float32)
    # the same inputs for both feature scalings (the scaling lives inside the model)
    inputs = [(model_inputs(data.images[i].astype(np.float32)[..., None], data.features[i]), eye[data.labels[i]])
              for i in batches]
    mean, variance = feature_statistics(data.features)
    loss_fn = keras.losses.CategoricalCrossentropy()
    print(f"Model {args.model}, {args.features}, {n_classes} classes, {args.initializer} initialisation, "
          f"{args.batches} batches of {args.batch_size}")
    print("| features | global gradient norm (min-max) | step scale under clipping | feature-branch share |")
    print("| --- | --- | --- | --- |")
    for label, stats in (("standardised", (mean, variance)),
                         ("unscaled (2016)", (np.zeros_like(mean), np.ones_like(variance)))):
        keras.backend.clear_session()
        keras.utils.set_random_seed(args.seed)
        model = build_model(args.model, n_classes, data.features.shape[1], initializer=args.initializer)
        set_feature_statistics(model, *stats)
        branch = {id(v) for v in feature_branch_variables(model)}
        norms, shares = [], []
        for x, y in inputs:
            with tf.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            total = float(tf.linalg.global_norm(grads))
            branch_grads = [g for g, v in zip(grads, model.trainable_variables, strict=True) if id(v) in branch]
            norms.append(total)
            shares.append(float(tf.linalg.global_norm(branch_grads)) / total)
        norm = float(np.mean(norms))
        print(f"| {label} | {norm:.1f} ({min(norms):.1f}-{max(norms):.1f}) | {min(1.0, args.clipnorm / norm):.3f} | "
              f"{np.mean(shares):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
