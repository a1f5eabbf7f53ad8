"""Calibrate a trained model's confidence: fit temperature scaling on PublicTest and store it in the model's metadata.

A face predicted "Happy 0.90" should be right about 90 % of the time. Temperature scaling (one scalar, fitted on
PublicTest to minimise the negative log-likelihood; the argmax and so the accuracy are unchanged) gets close.
The calibrated copy carries ``calibration`` in its metadata ({temperature, fitted_on, NLL and ECE before/after});
predict.py, predict_from_video.py and evaluate.py apply it (the copy gets its ONNX twin). PrivateTest is never
looked at here.

    python calibrate.py --model runs/fernet/model.keras --data fer2013_features --out runs/fernet/model_cal.keras
    python calibrate.py --model models/pretrained/fer_model.keras --data fer2013_features --out /tmp/fer_cal.keras
    # then: python predict.py --image photo.jpg --model runs/fernet/model_cal.keras --min-confidence 0.5

The input model is never overwritten (--out must name another file); the copy appears only once it is complete.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from errors import EXIT_OK, UserError, run_main


class CalibrationError(UserError):
    """A model or data directory that cannot be calibrated (named in the message)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="model saved by train.py (.keras)")
    parser.add_argument("--data", type=Path, required=True,
                        help="converted directory (convert_fer2013.py --out) whose PublicTest fits the temperature")
    parser.add_argument("--out", type=Path, required=True, help="the calibrated copy (.keras; not the input)")
    parser.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                        help="replace --out if it exists (default: refuse)")
    args = parser.parse_args(argv)
    if args.out.suffix != ".keras":
        parser.error(f"--out {args.out}: a calibrated model is a .keras file")
    if args.out.resolve() == args.model.resolve():
        parser.error(f"--out {args.out} is the input model; name a new file (inputs are never overwritten)")
    return args


def calibrate(model_path: Path, data_dir: Path, out_path: Path) -> dict:
    """Fit the temperature of ``model_path`` on ``data_dir``'s PublicTest, save the copy; returns ``calibration``."""
    from data.splits import load_split, read_data_meta
    from inference.calibration import calibration_metadata
    from inference.evaluation import check_compatible, predict_probabilities
    from models.io import load_model, read_metadata, save_model

    metadata = read_metadata(model_path)
    if model_path.suffix != ".keras":
        raise CalibrationError(f"{model_path}: only Keras models (.keras) are calibrated")
    check_compatible(metadata, read_data_meta(data_dir), data_dir, model_path)
    model, metadata = load_model(model_path)
    public = load_split(data_dir, "PublicTest", metadata["feature_set"], n_classes=len(metadata["class_names"]))
    probabilities = predict_probabilities(model, public.images, public.features)  # the raw softmax, uncalibrated
    calibration = calibration_metadata(probabilities, public.labels, "PublicTest")
    save_model(model, out_path, {**metadata, "calibration": calibration})
    from models.export import write_onnx_twin

    write_onnx_twin(out_path)  # predict.py runs the copy on ONNX Runtime too
    return calibration


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from tf_logging import quiet_tensorflow

    quiet_tensorflow()
    return run_main("calibrate.py", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.overwrite:
        raise CalibrationError(f"{args.out} exists (pass --overwrite to replace it)")
    try:
        cal = calibrate(args.model, args.data, args.out)
    except OSError as err:  # the output folder is not writable, say
        raise CalibrationError(f"{args.out}: cannot write ({err.strerror or err})") from None
    print(f"temperature {cal['temperature']:.3f} fitted on PublicTest ({cal['n']} faces): "
          f"NLL {cal['nll_before']:.4f} -> {cal['nll_after']:.4f}, "
          f"ECE {100 * cal['ece_before']:.2f} % -> {100 * cal['ece_after']:.2f} %")
    print(f"wrote {args.out}")
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
