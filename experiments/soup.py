"""Greedy model soup: average the weights of several runs of one architecture, choosing on PublicTest.

    # runs of the bundled model fine-tuned with --init-from / --teacher: one model of the same size and speed
    python experiments/soup.py runs/ft1/model.keras runs/ft2/model.keras runs/ft3/model.keras --data out/fer2013 \
        --out runs/soup --evaluate

Wortsman et al., "Model soups" (ICML 2022): models fine-tuned from the same starting weights (``--init-from``
runs, warm restarts, distilled students) usually lie in one basin, so the average of their weights is one model of
the same size and speed that is often more accurate than any of them. The greedy recipe:

1. score every ingredient on PublicTest and sort them, best first;
2. start the soup with the best one; add each next ingredient if the uniform average of the soup plus it scores
   at least as well on PublicTest as the soup without it.

Averaged weights do not match averaged batch-norm statistics, so after each averaging the BatchNormalization
moving mean/variance are recomputed from one pass over the Training faces (cumulative average over batches;
``recalibrate=False`` keeps the averaged statistics). Every choice uses PublicTest; PrivateTest is never read here.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from data.splits import load_split, model_inputs, read_data_meta  # noqa: E402
from errors import EXIT_OK, UserError, run_main  # noqa: E402


class SoupError(UserError, ValueError):
    """Models that cannot be averaged (another architecture, task or width), or fewer than two."""


@dataclasses.dataclass
class SoupResult:
    """What :func:`greedy_soup` chose and measured (accuracies on PublicTest)."""

    model: Any
    metadata: dict[str, Any]
    ingredients: list[dict[str, Any]]  # {"path", "alone", "tried", "accepted"} in the order tried
    public_test_accuracy: float


def _task(metadata: dict[str, Any]) -> tuple[str, str, list[str]]:
    return metadata["model_name"], metadata["feature_set"], list(metadata["class_names"])


def _accuracy(model, inputs, labels: np.ndarray, batch_size: int) -> float:
    return float(np.mean(model.predict(inputs, batch_size=batch_size, verbose=0).argmax(axis=1) == labels))


def recalibrate_batchnorm(model, images: np.ndarray, features: np.ndarray | None, *, batch_size: int = 256,
                          seed: int = 0) -> int:
    """Recompute every BatchNormalization layer's moving mean/variance from ``images`` (+ ``features``).

    One shuffled pass in training mode with momentum k/(k+1) on batch k, so the moving statistics end as the
    plain average of the per-batch statistics. Returns the number of batch-norm layers (0: nothing to do).
    """
    import keras

    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    if not layers:
        return 0
    momenta = [layer.momentum for layer in layers]
    order = np.random.default_rng(seed).permutation(len(images))
    try:
        for k, start in enumerate(range(0, len(order), batch_size)):
            idx = np.sort(order[start:start + batch_size])
            for layer in layers:
                layer.momentum = k / (k + 1)
            model(model_inputs(images[idx], None if features is None else features[idx]), training=True)
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    return len(layers)


BATCHNORM_SOURCES = {"clean": "Training", "augmented": "Training, one pass of the training augmentation"}


def augmented_pass(training, n_classes: int, metadata: dict[str, Any]) -> tuple[np.ndarray, np.ndarray | None]:
    """The Training faces (and features) once through the augmentation of the run that saved ``metadata``
    (``data.batches.batch_generator``: its seed, geometric augmentation, erasing and photometric degradations; no
    mixup or teacher), in batch order: (n, 48, 48, 1) float32 images and (n, d) features or None."""
    from data.batches import batch_generator
    from parameters import Config

    config = Config.from_saved(metadata["config"]).with_overrides({"epochs": 1, "mixup_alpha": 0.0})
    batches = [x if isinstance(x, tuple) else (x,) for x, _ in batch_generator(training, n_classes, config)]
    images = np.concatenate([batch[0] for batch in batches])
    features = np.concatenate([batch[1] for batch in batches]) if len(batches[0]) > 1 else None
    return images, features


def greedy_soup(
    paths: list[str | Path],
    data_dir: str | Path,
    *,
    recalibrate: bool = True,
    recalibrate_on: str = "clean",
    batch_size: int = 256,
    verbose: int = 1,
) -> SoupResult:
    """The greedy soup of the saved Keras models ``paths`` (same architecture, feature set and classes).

    ``recalibrate_on``: ``clean`` recomputes the batch-norm statistics on the Training faces as they are,
    ``augmented`` on one pass of them through the first ingredient's own training augmentation (geometric, erasing,
    ``--photometric``), the inputs its statistics were accumulated on while it trained."""
    from inference.evaluation import check_compatible
    from models.io import load_model, read_metadata, refresh_normalization

    if len(paths) < 2:
        raise SoupError(f"a soup needs at least two models, got {len(paths)}")
    paths = [Path(p) for p in paths]
    metas = [read_metadata(p) for p in paths]  # cheap checks before loading any weights
    first = _task(metas[0])
    for path, meta in zip(paths, metas, strict=True):
        if meta["model_name"] == "svm" or path.suffix != ".keras":
            raise SoupError(f"{path}: only Keras models can be averaged")
        if _task(meta) != first:
            raise SoupError(f"{path} is (model, feature set, classes) {_task(meta)}, but {paths[0]} is {first}: "
                                "a soup averages runs of one architecture on one task")
    data_meta = read_data_meta(Path(data_dir))
    check_compatible(metas[0], data_meta, Path(data_dir), paths[0])
    models = [load_model(p)[0] for p in paths]
    weights = [m.get_weights() for m in models]
    for path, w in zip(paths[1:], weights[1:], strict=True):
        shapes, expected = [a.shape for a in w], [a.shape for a in weights[0]]
        if shapes != expected:
            raise SoupError(f"{path}: weight shapes differ from {paths[0]} (another --width?): cannot average")

    feature_set, n_classes = metas[0]["feature_set"], len(first[2])
    public = load_split(data_dir, "PublicTest", feature_set, n_classes=n_classes)
    public_inputs = model_inputs(public.images, public.features)
    training = load_split(data_dir, "Training", feature_set, n_classes=n_classes) if recalibrate else None
    if not recalibrate:
        bn_images, bn_features = None, None
    elif recalibrate_on == "augmented":
        bn_images, bn_features = augmented_pass(training, n_classes, metas[0])
    else:
        bn_images, bn_features = training.images, training.features

    alone = [_accuracy(m, public_inputs, public.labels, batch_size) for m in models]
    order = sorted(range(len(paths)), key=lambda i: -alone[i])
    if verbose:
        for i in order:
            print(f"  {paths[i]}: PublicTest {alone[i]:.4f}", flush=True)
    soup_model = models[order[0]]
    chosen, best = [order[0]], alone[order[0]]
    best_weights = weights[order[0]]
    report = [{"path": str(paths[order[0]]), "alone": alone[order[0]], "tried": alone[order[0]], "accepted": True}]
    for i in order[1:]:
        trial = chosen + [i]
        soup_model.set_weights([np.mean([weights[j][k] for j in trial], axis=0) for k in range(len(weights[0]))])
        refresh_normalization(soup_model)
        if recalibrate:
            recalibrate_batchnorm(soup_model, bn_images, bn_features, batch_size=batch_size)
        score = _accuracy(soup_model, public_inputs, public.labels, batch_size)
        accepted = score >= best
        report.append({"path": str(paths[i]), "alone": alone[i], "tried": score, "accepted": accepted})
        if verbose:
            print(f"  + {paths[i]}: soup of {len(trial)} scores {score:.4f} -> "
                  f"{'kept' if accepted else 'left out'}", flush=True)
        if accepted:
            chosen, best, best_weights = trial, score, soup_model.get_weights()
    soup_model.set_weights(best_weights)
    refresh_normalization(soup_model)

    metadata = dict(metas[order[0]])
    for key in ("metrics", "training_command", "training_lineage", "training_hardware"):  # the ingredient's, not ours
        metadata.pop(key, None)
    metadata["soup"] = {
        "method": "greedy soup (Wortsman et al. 2022), uniform average, chosen on PublicTest",
        "batchnorm_recalibrated_on": BATCHNORM_SOURCES[recalibrate_on] if recalibrate else None,
        "ingredients": [str(paths[j]) for j in chosen],
        "tried": report,
        "public_test_accuracy": best,
    }
    return SoupResult(soup_model, metadata, report, best)


def soup_run(paths: list[str | Path], data_dir: str | Path, out_dir: str | Path, *, recalibrate: bool = True,
             recalibrate_on: str = "clean", verbose: int = 1) -> SoupResult:
    """:func:`greedy_soup` and save it as ``out_dir/model.keras`` (+ ``soup.json``), like a training run."""
    import json

    from models.io import save_model

    result = greedy_soup(paths, data_dir, recalibrate=recalibrate, recalibrate_on=recalibrate_on, verbose=verbose)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_model(result.model, out_dir / "model.keras", result.metadata)
    tmp = out_dir / ".soup.json.partial"
    tmp.write_text(json.dumps(result.metadata["soup"], indent=1) + "\n")
    tmp.replace(out_dir / "soup.json")
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("models", type=Path, nargs="+", metavar="MODEL",
                        help="saved .keras models of one architecture, feature set and classes (at least two)")
    parser.add_argument("--data", type=Path, required=True, help="converted directory (convert_fer2013.py --out)")
    parser.add_argument("--out", type=Path, default=Path("runs") / "soup",
                        help="writes OUT/model.keras and OUT/soup.json (default runs/soup)")
    parser.add_argument("--recalibrate-bn", action=argparse.BooleanOptionalAction, default=True,
                        help="recompute batch-norm statistics on Training after averaging (default)")
    parser.add_argument("--recalibrate-on", choices=list(BATCHNORM_SOURCES), default="clean",
                        help="the Training faces as they are (default), or once through the first model's own "
                             "training augmentation (--augment, --random-erasing, --photometric): the inputs its "
                             "batch-norm statistics were gathered on")
    parser.add_argument("--evaluate", action=argparse.BooleanOptionalAction, default=False,
                        help="then evaluate the soup on PublicTest and PrivateTest (OUT/metrics.json)")
    parser.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False,
                        help="with --evaluate: average each face with its mirror image")
    parser.add_argument("--verbose", type=int, choices=[0, 1], default=1, help="0 quiet, 1 one line per model")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_main("soup.py", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    result = soup_run(args.models, args.data, args.out, recalibrate=args.recalibrate_bn,
                      recalibrate_on=args.recalibrate_on, verbose=args.verbose)
    print(f"soup of {len(result.metadata['soup']['ingredients'])} of {len(args.models)} models: PublicTest "
          f"accuracy {result.public_test_accuracy:.4f}; model: {args.out / 'model.keras'}")
    if args.evaluate:
        from inference.evaluation import evaluate_run

        metrics = evaluate_run(args.out / "model.keras", args.data, args.out, tta=args.tta, verbose=args.verbose)
        print(f"PrivateTest accuracy {metrics['private_test_accuracy']:.4f} (metrics: {args.out / 'metrics.json'})")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
