"""Training speed of the Keras models on this machine: images/s and projected seconds per FER2013 epoch.

Runs the real training step (training.trainer's optimizer, loss, batch generator and augmentation) for a few
batches of synthetic faces (or of a converted directory with --data), skips the first (tracing) batches, and
projects the time for one epoch of the 28,709 Training faces. Validation and checkpointing are not included.

Examples:
    python benchmarks/bench_train.py                                   # Models A and B, raw and with features
    python benchmarks/bench_train.py --models B --features landmarks_hog_windows --steps 20
    python benchmarks/bench_train.py --no-deterministic                # cost of op determinism
    python benchmarks/bench_train.py --augment --models fernet         # with the augmentation pipeline
    # another Keras backend (what a GPU machine without TensorFlow would run)
    KERAS_BACKEND=jax python benchmarks/bench_train.py --models fernet --width 24 --features raw --augment
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

TRAINING_SIZE = 28_709


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from models import keras_models
    from parameters import FEATURE_SETS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=keras_models(), default=["A", "B"])
    parser.add_argument("--features", nargs="+", choices=list(FEATURE_SETS), default=["raw", "landmarks_hog_windows"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="timed batches (default 8)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first batches (default 2)")
    parser.add_argument("--data", type=Path, help="converted directory to read Training from (default: synthetic)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--width", type=int, help="fernet's width (default: fernet's own, 32)")
    parser.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True,
                        help="tf op determinism, as train.py (default on; TensorFlow backend only)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1 or args.batch_size < 1:
        parser.error("--steps, --warmup and --batch-size must be >= 1")
    return args


def synthetic_split(n: int, feature_dim: int):
    import numpy as np

    from data.splits import SplitData

    rng = np.random.default_rng(0)
    features = rng.uniform(0, 47, (n, feature_dim)).astype(np.float32) if feature_dim else None
    return SplitData(rng.integers(0, 256, (n, 48, 48), dtype=np.uint8), rng.integers(0, 7, n), features)


def bench_one(name: str, feature_set: str, args: argparse.Namespace) -> dict:
    """Time ``args.steps`` training batches of model ``name``; return images/s and projected s/epoch."""
    import keras

    from data.batches import batch_generator
    from data.splits import feature_statistics, load_split
    from models import build_model
    from parameters import FEATURE_SETS, Config
    from training.loop import set_feature_statistics
    from training.optim import make_optimizer

    n_batches = args.warmup + args.steps
    n = n_batches * args.batch_size
    config = Config().with_overrides({"model": name, "feature_set": feature_set, "batch_size": args.batch_size,
                                      "epochs": 1, "augment": args.augment})
    dim = FEATURE_SETS[feature_set]
    if args.data:
        data = load_split(args.data, "Training", feature_set, limit=n)
        n_classes = int(data.labels.max()) + 1
    else:
        data, n_classes = synthetic_split(n, dim), 7
    keras.utils.set_random_seed(0)
    extra = {"width": args.width} if name == "fernet" and args.width else {}
    model = build_model(name, n_classes, dim, keep_prob=config.hyperparams.keep_prob, **extra)
    if dim:
        set_feature_statistics(model, *feature_statistics(data.features))
    model.compile(optimizer=make_optimizer(config, math.ceil(TRAINING_SIZE / args.batch_size)),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    times: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter())

    model.fit(batch_generator(data, n_classes, config), steps_per_epoch=math.ceil(len(data.labels) / args.batch_size),
              epochs=1, verbose=0, callbacks=[Clock()], shuffle=False)
    timed = times[args.warmup - 1 :]
    seconds = timed[-1] - timed[0]
    images_per_s = (len(timed) - 1) * args.batch_size / seconds
    return {
        "model": name,
        "features": feature_set,
        "parameters": sum(int(math.prod(v.shape)) for v in model.trainable_weights),
        "batch_size": args.batch_size,
        "timed_batches": len(timed) - 1,
        "images_per_s": images_per_s,
        "seconds_per_epoch": TRAINING_SIZE / images_per_s,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import os

    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if args.deterministic:
            tf.config.experimental.enable_op_determinism()
        where = f"TensorFlow {tf.__version__}, GPUs {len(tf.config.list_physical_devices('GPU'))}"
    elif backend == "jax":
        import jax

        where = f"JAX {jax.__version__}, devices {[d.platform for d in jax.devices()]}"
    else:
        where = f"Keras backend {backend}"
    deterministic = args.deterministic and backend == "tensorflow"
    print(f"cores {os.cpu_count()}, {where}, deterministic {deterministic}, augment {args.augment}, "
          f"batch {args.batch_size}")
    print(f"{'model':8} {'features':24} {'trainable':>12} {'images/s':>10} {'s/epoch':>9}")
    results = []
    for name in args.models:
        for feature_set in args.features:
            row = bench_one(name, feature_set, args)
            results.append(row)
            print(f"{name:8} {feature_set:24} {row['parameters']:>12,} {row['images_per_s']:>10.1f} "
                  f"{row['seconds_per_epoch']:>9.0f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
