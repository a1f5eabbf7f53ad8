"""Train a facial expression model on a converted FER2013 directory; select on PublicTest, report PrivateTest.

    # the original Model B with landmarks + sliding-window HOG and the original hyperparameters
    python train.py --data out/fer2013 --model B --features landmarks_hog_windows --epochs 13 --out runs/b --evaluate
    # continue an interrupted run
    python train.py --data out/fer2013 --out runs/b --resume --evaluate
    # hyperparameters from optimize_hyperparams.py (flags win over the file)
    python train.py --data out/fer2013 --params best_params.json --learning-rate 0.01 --out runs/b2
    # the modern recipe on pixels
    python train.py --data out/fer2013 --model A --features raw --optimizer adam --optimizer-param 0.9 \\
        --learning-rate 1e-3 --schedule cosine --warmup-epochs 1 --augment --random-erasing 0.5 --label-smoothing 0.1
    # SVM baseline on landmark features
    python train.py --data out/fer2013 --model svm --features landmarks_hog --out runs/svm --evaluate
    # evaluate a saved model on PrivateTest (and PublicTest): metrics.json, confusion matrix, per-class report
    python train.py --evaluate-only --model-path runs/b/model.keras --data out/fer2013 [--tta]

A run directory holds model.keras (best on PublicTest, with its metadata), checkpoints/, history.csv,
learning_curves.png, logs/ (TensorBoard) and, after evaluation, metrics.json and confusion_matrix_*.png/json.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from parameters import FEATURE_SETS, OPTIMIZERS, Config, Hyperparams, load_params_file

_CHOICES = {
    "optimizer": list(OPTIMIZERS),
    "schedule": ["exponential", "cosine", "onecycle"],
    "svm_kernel": ["rbf", "linear", "poly", "sigmoid"],
}
# Config fields that get a flag of their own, besides every Hyperparams field.
_EXTRA_FIELDS = (
    ("training", "early_stopping_patience"),
    ("training", "tta"),
    ("training", "soft_labels"),
    ("training", "save_model"),
    ("network", "use_batchnorm_after_conv_layers"),
    ("network", "use_batchnorm_after_fully_connected_layers"),
    ("network", "width"),
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
    parser.add_argument("--evaluate-only", action="store_true", help="only evaluate --model-path on --data")
    parser.add_argument("--model-path", type=Path, help="saved model for --evaluate-only (RUN_DIR/model.keras)")
    parser.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1,
                        help="0 quiet, 1 progress bar (default), 2 one line per epoch")
    group = parser.add_argument_group("hyperparameters (default: parameters.py, then --params, then these)")
    defaults = Config().flat()
    for f in _hyperparameter_fields():
        flag = "--" + f.name.replace("_", "-")
        default = defaults[f.name]
        help_text = f"default {default}"
        if isinstance(default, bool):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            group.add_argument(flag, dest=f.name, type=type(default), choices=_CHOICES.get(f.name), default=None,
                               help=help_text)
    args = parser.parse_args(argv)
    if args.evaluate_only and args.model_path is None:
        parser.error("--evaluate-only needs --model-path")
    if args.model_path is not None and not args.evaluate_only:
        parser.error("--model-path goes with --evaluate-only")
    if args.resume and args.out is None:
        parser.error("--resume needs --out (the run directory to continue)")
    return args


def build_config(args: argparse.Namespace) -> Config:
    """Config() <- --params file <- flags."""
    overrides: dict[str, Any] = {}
    if args.params is not None:
        overrides.update(load_params_file(args.params))
    named = {"model": args.model, "feature_set": args.features, "epochs": args.epochs,
             "batch_size": args.batch_size, "seed": args.seed}
    named.update({f.name: getattr(args, f.name) for f in _hyperparameter_fields()})
    overrides.update({k: v for k, v in named.items() if v is not None})
    config = Config().with_overrides(overrides)
    config.validate()
    return config


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from models.io import ModelFileError
    from models.training import TrainingError

    try:
        if args.evaluate_only:
            from models.evaluation import evaluate_run

            tta = bool(args.tta)
            metrics = evaluate_run(args.model_path, args.data, args.out, tta=tta, verbose=args.verbose)
            print(f"PrivateTest accuracy {metrics['private_test_accuracy']:.4f}; "
                  f"PublicTest accuracy {metrics['public_test_accuracy']:.4f}")
            return 0
        config = build_config(args)
        out = args.out or Path("runs") / f"{config.network.model}_{config.dataset.feature_set}"
        from models.training import train

        result = train(config, args.data, out, resume=args.resume, verbose=args.verbose)
        print(f"best PublicTest accuracy {result.best_public_accuracy:.4f} at epoch {result.best_epoch}; "
              f"model: {result.model_path}")
        if args.evaluate:
            if not result.model_path.is_file():
                raise TrainingError(f"{result.model_path} was not saved (--no-save-model): nothing to evaluate")
            from models.evaluation import evaluate_run

            metrics = evaluate_run(result.model_path, args.data, out, tta=config.training.tta, verbose=args.verbose)
            print(f"PrivateTest accuracy {metrics['private_test_accuracy']:.4f} (metrics: {out / 'metrics.json'})")
        return 0
    except (TrainingError, ModelFileError, ValueError, FileNotFoundError) as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
