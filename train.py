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
metadata) and its ONNX twin model.onnx (+ .meta.json; --no-onnx-twin skips it; --int8 adds model.int8.onnx),
checkpoints/, history.csv, learning_curves.png, logs/ (TensorBoard) and, after --evaluate, metrics.json and
confusion_matrix_*.png/json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from errors import EXIT_OK, run_main
from flags import add_config_fields, config_from_args
from parameters import Config
from tf_logging import keras_backend


def build_parser() -> argparse.ArgumentParser:
    from models import available_models

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="converted directory (convert_fer2013.py --out)")
    parser.add_argument("--out", type=Path, help="run directory (default runs/<model>_<features>)")
    parser.add_argument("--params", type=Path,
                        help="JSON of parameters (optimize_hyperparams.py output or Config); the flags below win")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out with its saved configuration (flags given with it win)")
    parser.add_argument("--evaluate", action=argparse.BooleanOptionalAction, default=False,
                        help="after training, evaluate the best model on PublicTest and PrivateTest")
    parser.add_argument("--onnx-twin", action=argparse.BooleanOptionalAction, default=True,
                        help="after training, export the best model's ONNX twin (model.onnx) beside it, so "
                        "predict.py, predict_from_video.py and serve.py run it without TensorFlow (default: on)")
    parser.add_argument("--int8", action="store_true",
                        help="after training, also write model.int8.onnx, the int8 export (export.py --int8) "
                        "calibrated on --data's Training faces: a ~2.4x faster classifier for --backend int8")
    parser.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1,
                        help="0 quiet, 1 progress bar (default), 2 one line per epoch")
    parser.add_argument("--tf-logs", action=argparse.BooleanOptionalAction, default=False,
                        help="show TensorFlow's own start-up logging (hidden by default)")
    # every field of parameters.Config, with its help, choices and range (values out of range: exit 2)
    add_config_fields(parser, choices={"model": available_models()})
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume and args.out is None:
        parser.error("--resume needs --out (the run directory to continue)")
    return args


def build_config(args: argparse.Namespace) -> Config:
    """Config() <- --params file <- flags. With --resume the base is the interrupted run's saved config instead of
    Config(), so a bare ``--resume`` continues the run as it was started (flags still win).
    TrainingError when --resume names a folder without a run; ConfigError (naming the file and key) for a bad
    --params value."""
    from training.run import require_run, saved_config

    base = Config()
    if args.resume:
        require_run(args.out)
        base = saved_config(args.out) or base
    return config_from_args(args, base, params_file=args.params)


def run(args: argparse.Namespace) -> int:
    """Train (and with --evaluate, score the best model on PublicTest and PrivateTest)."""
    config = build_config(args)
    args.out = args.out or Path("runs") / f"{config.network.model}_{config.dataset.feature_set}"
    from training.trainer import TrainingError, train

    result = train(config, args.data, args.out, resume=args.resume, verbose=args.verbose)
    print(f"best PublicTest accuracy {result.best_public_accuracy:.4f} at epoch {result.best_epoch}; "
          f"model: {result.model_path}")
    saved, backend = result.model_path.suffix == ".keras" and result.model_path.is_file(), keras_backend()
    if saved and (args.onnx_twin or args.int8) and backend != "tensorflow":
        print(f"train.py: note: no ONNX twin or int8 export under Keras backend {backend} (the converter "
              f"runs on TensorFlow); make them later with: python export.py --model {result.model_path} --format onnx",
              file=sys.stderr)
    elif saved:
        if args.onnx_twin:
            write_twin(result.model_path)
        if args.int8:
            write_int8(result.model_path, args.data)
    if args.evaluate:
        if not result.model_path.is_file():
            raise TrainingError(f"{result.model_path} was not saved (--no-save-model): nothing to evaluate")
        from inference.evaluation import evaluate_run

        metrics = evaluate_run(result.model_path, args.data, args.out, tta=config.training.tta, verbose=args.verbose)
        print(f"PrivateTest accuracy {metrics['private_test_accuracy']:.4f} (metrics: {args.out / 'metrics.json'})")
    return EXIT_OK


def write_twin(model_path: Path) -> None:
    """The ONNX twin of a finished run's model; a converter failure is a warning, the Keras model stands."""
    from models.export import ExportError, write_onnx_twin

    try:
        twin = write_onnx_twin(model_path)
    except ExportError as err:
        print(f"train.py: warning: no ONNX twin ({err}); predict.py will run {model_path} through TensorFlow",
              file=sys.stderr)
        return
    print(f"ONNX twin: {twin} (predict.py runs it on ONNX Runtime)")


def write_int8(model_path: Path, data: Path) -> None:
    """The int8 export of a finished run's model, calibrated on the run's own Training faces (up to 1,024, and as
    many more to check it); a failure is a warning, the Keras model and its twin stand."""
    from data.dataset import read_meta
    from models.export import ExportError, export_model, export_quantization
    from models.quantize import CALIBRATION_FACES, QuantizeError

    n = sum(read_meta(data).get("counts", {}).get("Training", {}).values())
    try:
        path = export_model(model_path, "onnx", int8_calibration=data,
                            calibration_faces=max(1, min(CALIBRATION_FACES, n // 2)))
    except (ExportError, QuantizeError) as err:
        print(f"train.py: warning: no int8 export ({err})", file=sys.stderr)
        return
    agreement = export_quantization(path)["top1_agreement_vs_keras"]
    print(f"int8 export: {path} ({agreement:.1%} of held-out Training faces classified as Keras does; "
          "run it with --backend int8)")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tf_logging import quiet_tensorflow

    quiet_tensorflow(verbose=args.tf_logs)
    return run_main("train.py", lambda: run(args), interrupted=lambda: interrupted_message(args))


def interrupted_message(args: argparse.Namespace) -> str:
    if args.out is None or not (args.out / "config.json").is_file():  # before the run started: nothing to resume
        return "interrupted before the first step; nothing to resume"
    return f"interrupted; continue with: python train.py --data {args.data} --out {args.out} --resume"


if __name__ == "__main__":
    raise SystemExit(main())
