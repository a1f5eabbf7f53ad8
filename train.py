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
    # evaluate a saved model on PrivateTest (and PublicTest): metrics.json, confusion matrix, per-class report
    python train.py --evaluate-only --model-path runs/b/model.keras --data out/fer2013 [--tta]
    # evaluate on photos: DIR/<class>/*.jpg (happy/, Sad/, anger/ ...) through predict.py's face pipeline
    python train.py --evaluate-only --model-path runs/b/model.keras --images-dir photos/ [--detector haar] [--out DIR]
    # FER+ (convert_fer2013.py --ferplus) fitting the annotators' vote distributions
    python train.py --data out/ferplus --model B --soft-labels --out runs/ferplus_b --evaluate
    # greedy model soup: average the weights of runs of one architecture (e.g. --init-from / --teacher runs of
    # the bundled model), keeping each run only if PublicTest does not drop; one model, same speed
    python train.py --soup runs/ft1/model.keras runs/ft2/model.keras runs/ft3/model.keras --data out/fer2013 \
        --out runs/soup --evaluate
    # export for deployment: runs/b/model.onnx (or .tflite) + model.onnx.meta.json (class names, feature set)
    python train.py --export onnx --model-path runs/b/model.keras [--export-path deploy/fer.onnx]

A run directory holds model.keras (best on PublicTest, with its metadata), checkpoints/, history.csv,
learning_curves.png, logs/ (TensorBoard) and, after evaluation, metrics.json and confusion_matrix_*.png/json.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

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
    "photometric": "probability P of each real-photo degradation per training face: detector-box jitter, gamma, "
    "contrast/brightness, histogram equalisation (P/4), blur or downscaling, noise, JPEG re-encoding; raw pixels "
    "only; a --teacher sees the undegraded face (default 0: off)",
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
    parser.add_argument("--data", type=Path,
                        help="converted directory (convert_fer2013.py --out); not needed with --images-dir/--export")
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
    parser.add_argument("--model-path", type=Path,
                        help="saved model for --evaluate-only / --export (RUN_DIR/model.keras)")
    parser.add_argument("--images-dir", type=Path,
                        help="with --evaluate-only: a folder of labelled photos, one subfolder per class")
    parser.add_argument("--detector", choices=["dlib", "haar"], default="dlib",
                        help="face detector for --images-dir (default dlib)")
    parser.add_argument("--assume-face", action=argparse.BooleanOptionalAction, default=False,
                        help="with --images-dir: each image is already a face crop (no detection)")
    parser.add_argument("--soup", type=Path, nargs="+", metavar="MODEL",
                        help="greedy model soup of these saved models (same architecture, feature set, classes): "
                        "average their weights, keeping each model only if PublicTest accuracy does not drop; "
                        "writes OUT/model.keras (default runs/soup) and OUT/soup.json")
    parser.add_argument("--recalibrate-bn", action=argparse.BooleanOptionalAction, default=True,
                        help="with --soup: recompute batch-norm statistics on Training after averaging (default)")
    parser.add_argument("--export", choices=["onnx", "tflite"], help="export --model-path to ONNX or TFLite")
    parser.add_argument("--export-path", type=Path, help="exported file (default: the model's path, new suffix)")
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
    if args.export and args.evaluate_only:
        parser.error("--export and --evaluate-only are separate commands")
    if (args.evaluate_only or args.export) and args.model_path is None:
        parser.error(f"{'--export' if args.export else '--evaluate-only'} needs --model-path")
    if args.model_path is not None and not (args.evaluate_only or args.export):
        parser.error("--model-path goes with --evaluate-only or --export")
    if args.images_dir is not None and not args.evaluate_only:
        parser.error("--images-dir goes with --evaluate-only")
    if args.export_path is not None and not args.export:
        parser.error("--export-path goes with --export")
    if args.soup is not None and (args.export or args.evaluate_only or args.resume):
        parser.error("--soup is its own command (with --data, --out and optionally --evaluate)")
    if args.data is None and not (args.export or args.images_dir is not None):
        parser.error("--data is required (the converted directory), except with --export or --images-dir")
    if args.resume and args.out is None:
        parser.error("--resume needs --out (the run directory to continue)")
    return args


def build_config(args: argparse.Namespace) -> Config:
    """Config() <- --params file <- flags. With --resume the base is the interrupted run's saved config instead of
    Config(), so a bare ``--resume`` continues the run as it was started (flags still win)."""
    base = Config()
    if args.resume:
        from training.trainer import saved_config

        base = saved_config(args.out) or base
    overrides: dict[str, Any] = {}
    if args.params is not None:
        overrides.update(load_params_file(args.params))
    named = {"model": args.model, "feature_set": args.features, "epochs": args.epochs,
             "batch_size": args.batch_size, "seed": args.seed}
    named.update({f.name: getattr(args, f.name) for f in _hyperparameter_fields()})
    overrides.update({k: v for k, v in named.items() if v is not None})
    config = base.with_overrides(overrides)
    config.validate()
    return config


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from inference.predictor import PredictorError
    from models.io import ModelFileError
    from training.trainer import TrainingError

    try:
        if args.export:
            from models.export import export_model, export_sidecar_path

            path = export_model(args.model_path, args.export, args.export_path)
            print(f"exported {args.model_path} to {path} (metadata: {export_sidecar_path(path)})")
            return 0
        if args.evaluate_only and args.images_dir is not None:
            from inference.folder_eval import evaluate_folder_run

            metrics = evaluate_folder_run(args.model_path, args.images_dir, args.out, detector=args.detector,
                                          assume_face=args.assume_face, verbose=args.verbose)
            out = args.out or args.model_path.parent
            print(f"accuracy {metrics['accuracy']:.4f} on {metrics['n_images']} images "
                  f"({metrics['n_no_face']} without a face); metrics: {out / 'folder_metrics.json'}")
            return 0
        if args.evaluate_only:
            from inference.evaluation import evaluate_run

            tta = bool(args.tta)
            metrics = evaluate_run(args.model_path, args.data, args.out, tta=tta, verbose=args.verbose)
            print(f"PrivateTest accuracy {metrics['private_test_accuracy']:.4f}; "
                  f"PublicTest accuracy {metrics['public_test_accuracy']:.4f}")
            return 0
        if args.soup is not None:
            from inference.evaluation import evaluate_run
            from training.soup import soup_run

            out = args.out or Path("runs") / "soup"
            result = soup_run(args.soup, args.data, out, recalibrate=args.recalibrate_bn, verbose=args.verbose)
            print(f"soup of {len(result.metadata['soup']['ingredients'])} of {len(args.soup)} models: PublicTest "
                  f"accuracy {result.public_test_accuracy:.4f}; model: {out / 'model.keras'}")
            if args.evaluate:
                metrics = evaluate_run(out / "model.keras", args.data, out, tta=bool(args.tta), verbose=args.verbose)
                print(f"PrivateTest accuracy {metrics['private_test_accuracy']:.4f} (metrics: {out / 'metrics.json'})")
            return 0
        config = build_config(args)
        out = args.out or Path("runs") / f"{config.network.model}_{config.dataset.feature_set}"
        from training.trainer import train

        result = train(config, args.data, out, resume=args.resume, verbose=args.verbose)
        print(f"best PublicTest accuracy {result.best_public_accuracy:.4f} at epoch {result.best_epoch}; "
              f"model: {result.model_path}")
        if args.evaluate:
            if not result.model_path.is_file():
                raise TrainingError(f"{result.model_path} was not saved (--no-save-model): nothing to evaluate")
            from inference.evaluation import evaluate_run

            metrics = evaluate_run(result.model_path, args.data, out, tta=config.training.tta, verbose=args.verbose)
            print(f"PrivateTest accuracy {metrics['private_test_accuracy']:.4f} (metrics: {out / 'metrics.json'})")
        return 0
    except (TrainingError, ModelFileError, PredictorError, ValueError, FileNotFoundError) as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
