"""Train a facial expression model on a converted FER2013 directory; select on PublicTest, report PrivateTest.

    # the original Model B with landmarks + sliding-window HOG and the original hyperparameters
    python train.py --data out/fer2013 --model B --features landmarks_hog_windows --epochs 13 --out runs/b --evaluate
    # continue an interrupted run
    python train.py --data out/fer2013 --out runs/b --resume --evaluate
    # fine-tune / warm-restart from a saved model (e.g. the bundled one) with a new cosine cycle
    python train.py --data out/fer2013 --model fernet --width 16 --features raw --init-from \
        models/pretrained/fer_model.keras --schedule cosine --learning-rate 0.01 --epochs 20 --out runs/ft
    # hyperparameters from optimize_hyperparams.py (flags win over the file)
    python train.py --data out/fer2013 --params best_params.json --learning-rate 0.01 --out runs/b2
    # the modern recipe on pixels
    python train.py --data out/fer2013 --model A --features raw --optimizer adam --optimizer-param 0.9 \\
        --learning-rate 1e-3 --schedule cosine --warmup-epochs 1 --augment --random-erasing 0.5 --label-smoothing 0.1
    # SVM baseline on landmark features
    python train.py --data out/fer2013 --model svm --features landmarks_hog --out runs/svm --evaluate
    # FER+ (convert_fer2013.py --ferplus) fitting the annotators' vote distributions
    python train.py --data out/ferplus --model B --soft-labels --out runs/ferplus_b --evaluate

Scoring a saved model is evaluate.py, exporting it is export.py, and model soups are experiments/soup.py.
Exit codes (errors.py): 0 ok, 1 bad data/config/resume or a diverged run, 2 bad command line, 130 interrupted
(Ctrl-C or SIGTERM; continue with --resume).

A run directory holds config.json (written before the first step), model.keras (best on PublicTest, with its
metadata), checkpoints/, history.csv, learning_curves.png, logs/ (TensorBoard) and, after --evaluate, metrics.json
and confusion_matrix_*.png/json.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, UserError, sigterm_as_interrupt
from parameters import FEATURE_SETS, INITIALIZERS, OPTIMIZERS, Config, Hyperparams, load_params_file

_CHOICES = {
    "optimizer": list(OPTIMIZERS),
    "schedule": ["exponential", "cosine", "onecycle"],
    "svm_kernel": ["rbf", "linear", "poly", "sigmoid"],
    "initializer": list(INITIALIZERS),
}
_HELP = {
    "init_from": "a saved model (.keras) of the same architecture, classes and feature set to start from instead of "
    "random weights: fine-tuning, or a second cosine cycle (warm restart); a new run's schedule starts afresh",
    "teacher": "knowledge distillation: saved model(s) (.keras, comma-separated; same classes, the same feature set "
    "or raw pixels, any architecture) whose probabilities on each augmented batch, averaged over the teachers and "
    "the mirror image, are mixed into the targets",
    "standardize_features": "standardise landmark/HOG features with Training statistics inside the model (default); "
    "--no-standardize-features feeds them raw, as the 2016 code did",
    "initializer": "weight initialisation of Models A/B: keras (Glorot uniform, default) or tflearn (the 2016 "
    "code's: conv uniform +-sqrt(3/fan_in), fully connected truncated normal with stddev 0.02)",
    "global_clipnorm": "rescale each step's gradients to at most this global L2 norm; 0 turns clipping off "
    "(default 5.0, the 2016 code's: tflearn DNN's default clip_gradients; without it Model B on raw pixels collapses "
    "to one class)",
    "distill_weight": "with --teacher: target = (1 - w) * label + w * teacher probabilities (default 0.5)",
}
# Config fields that get a flag of their own, besides every Hyperparams field.
_EXTRA_FIELDS = (
    ("training", "early_stopping_patience"),
    ("training", "tta"),
    ("training", "soft_labels"),
    ("training", "save_model"),
    ("training", "init_from"),
    ("training", "teacher"),
    ("training", "distill_weight"),
    ("network", "use_batchnorm_after_conv_layers"),
    ("network", "use_batchnorm_after_fully_connected_layers"),
    ("network", "initializer"),
    ("network", "width"),
    ("network", "standardize_features"),
    ("dataset", "trunc_trainset_to"),
    ("dataset", "trunc_validationset_to"),
)


def _hyperparameter_fields() -> list[dataclasses.Field]:
    defaults = Config()
    fields = list(dataclasses.fields(Hyperparams))
    for section, name in _EXTRA_FIELDS:
        fields += [f for f in dataclasses.fields(getattr(defaults, section)) if f.name == name]
    return fields


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from models import available_models

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="converted directory (convert_fer2013.py --out)")
    parser.add_argument("--model", choices=available_models(), help="architecture (default: Config's, B)")
    parser.add_argument("--features", choices=list(FEATURE_SETS), help="feature set (default landmarks_hog_windows)")
    parser.add_argument("--epochs", type=int, help="epochs (default 13)")
    parser.add_argument("--batch-size", type=int, help="batch size (default 128)")
    parser.add_argument("--seed", type=int, help="random seed: data order, augmentation, initialisation (default 0)")
    parser.add_argument("--out", type=Path, help="run directory (default runs/<model>_<features>)")
    parser.add_argument("--params", type=Path, help="JSON of parameters (optimize_hyperparams.py output or Config)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    parser.add_argument("--evaluate", action=argparse.BooleanOptionalAction, default=False,
                        help="after training, evaluate the best model on PublicTest and PrivateTest")
    parser.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1,
                        help="0 quiet, 1 progress bar (default), 2 one line per epoch")
    group = parser.add_argument_group("hyperparameters (default: parameters.py, then --params, then these)")
    defaults = Config().flat()
    for f in _hyperparameter_fields():
        flag = "--" + f.name.replace("_", "-")
        default = defaults[f.name]
        help_text = _HELP.get(f.name, f"default {default}")
        if isinstance(default, bool):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(flag, dest=f.name, type=type(default), choices=_CHOICES.get(f.name), default=None,
                               help=help_text)
    args = parser.parse_args(argv)
    if args.resume and args.out is None:
        parser.error("--resume needs --out (the run directory to continue)")
    return args


def build_config(args: argparse.Namespace) -> Config:
    """Config() <- --params file <- flags. With --resume the base is the interrupted run's saved config instead of
    Config(), so a bare ``--resume`` continues the run as it was started (flags still win).
    TrainingError when --resume names a folder without a run, or a parameter is unknown or out of range."""
    from training.run import TrainingError, require_run, saved_config

    base = Config()
    if args.resume:
        require_run(args.out)
        base = saved_config(args.out) or base
    named = {"model": args.model, "feature_set": args.features, "epochs": args.epochs,
             "batch_size": args.batch_size, "seed": args.seed}
    named.update({f.name: getattr(args, f.name) for f in _hyperparameter_fields()})
    try:  # parameters.py reports unknown names, bad files and out-of-range values as ValueError
        overrides: dict[str, Any] = load_params_file(args.params) if args.params is not None else {}
        overrides.update({k: v for k, v in named.items() if v is not None})
        config = base.with_overrides(overrides)
        config.validate()
    except ValueError as err:
        raise TrainingError(str(err)) from None
    return config


def run(args: argparse.Namespace) -> int:
    """Train (and with --evaluate, score the best model on PublicTest and PrivateTest)."""
    config = build_config(args)
    args.out = args.out or Path("runs") / f"{config.network.model}_{config.dataset.feature_set}"
    from training.trainer import TrainingError, train

    result = train(config, args.data, args.out, resume=args.resume, verbose=args.verbose)
    print(f"best PublicTest accuracy {result.best_public_accuracy:.4f} at epoch {result.best_epoch}; "
          f"model: {result.model_path}")
    if args.evaluate:
        if not result.model_path.is_file():
            raise TrainingError(f"{result.model_path} was not saved (--no-save-model): nothing to evaluate")
        from inference.evaluation import evaluate_run

        metrics = evaluate_run(result.model_path, args.data, args.out, tta=config.training.tta, verbose=args.verbose)
        print(f"PrivateTest accuracy {metrics['private_test_accuracy']:.4f} (metrics: {args.out / 'metrics.json'})")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        with sigterm_as_interrupt():
            return run(args)
    except UserError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        if args.out is None or not (args.out / "config.json").is_file():  # before the run started: nothing to resume
            print("train.py: interrupted before the first step; nothing to resume", file=sys.stderr)
        else:
            print(f"train.py: interrupted; continue with: python train.py --data {args.data} --out {args.out} "
                  "--resume", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
