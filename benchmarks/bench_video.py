"""End-to-end speed of the video pipeline, ours against the mini-Xception peer, in one run on the same machine.

Runs ``inference.video.run_video`` headless (no window, no output file, predictions on every frame by default) on
``../shared/media/face_video_long.mp4`` (596x336, 464 frames, one face): decode -> grey -> detect -> crop ->
features -> one model call -> smoothing -> drawing. Then the same loop with the peer
``../shared/peers/fer2013_mini_XCEPTION.102-0.66.hdf5`` (Haar detector, 64x64 input, ``x/255`` then ``(x-0.5)*2``).
Target: >= 60 fps for ours with predictions on every frame.

Without ``--model`` (or a bundled ``models/pretrained/fer_model.keras``) ours is an untrained network of ``--arch``
with ``--feature-set``: speed does not depend on the weights, and the output says so.

    python benchmarks/bench_video.py
    python benchmarks/bench_video.py --arch B --feature-set landmarks_hog_windows --repeat 3
    python benchmarks/bench_video.py --model runs/A/model.keras --detector haar --no-peer
    python benchmarks/bench_video.py --backend keras --no-peer      # ours through TensorFlow instead of its ONNX twin

Ours is loaded as predict.py loads it (``--backend auto``: the ONNX twin beside the ``.keras`` when there is one).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"

from inference.backends import BACKENDS  # noqa: E402
from inference.faces import DETECTORS, FacePipeline  # noqa: E402
from parameters import EMOTIONS, FEATURE_SETS  # noqa: E402

TARGET_FPS = 60.0
VIDEO = FacePipeline.for_video()  # predict_from_video.py's defaults


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=SHARED / "media" / "face_video_long.mp4")
    parser.add_argument("--model", type=Path, help="our trained .keras model (default: bundled, else untrained)")
    parser.add_argument("--arch", default="A", help="architecture of the untrained stand-in (default A)")
    parser.add_argument("--feature-set", choices=list(FEATURE_SETS), default="raw", help="for the untrained model")
    parser.add_argument("--detector", choices=DETECTORS, default=VIDEO.detector,
                        help="our detector (default: predict_from_video.py's, %(default)s)")
    parser.add_argument("--detect-size", type=int, default=VIDEO.detect_size, metavar="PX",
                        help="longer side for detection (default %(default)s)")
    parser.add_argument("--align", action=argparse.BooleanOptionalAction, default=VIDEO.align,
                        help="align faces along their landmarks (default %(default)s)")
    parser.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="our classifier's runtime, chosen as predict.py does"
    )
    parser.add_argument("--every-ms", type=float, default=0.0, help="ms between predictions (default 0: every frame)")
    parser.add_argument("--max-frames", type=int, help="stop each run after N frames")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per pipeline (median reported)")
    parser.add_argument("--peer", action=argparse.BooleanOptionalAction, default=True, help="also time the peer")
    parser.add_argument("--peer-model", type=Path, default=SHARED / "peers" / "fer2013_mini_XCEPTION.102-0.66.hdf5")
    parser.add_argument("--peer-detector", choices=("dlib", "haar"), default="haar")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if not args.video.is_file():
        parser.error(f"{args.video}: no such video (is ../shared present?)")
    return args


def untrained_classifier(arch: str, feature_set: str):
    """An untrained model of ``arch`` with the documented contract (7 classes); feature_norm set to identity."""
    import numpy as np

    from inference.classifiers import FerModelClassifier
    from models import build_model

    feature_dim = FEATURE_SETS[feature_set]
    model = build_model(arch, len(EMOTIONS), feature_dim)
    if feature_dim:
        layer = model.get_layer("feature_norm")
        layer.adapt_mean.assign(np.zeros(feature_dim, np.float32))
        layer.adapt_variance.assign(np.ones(feature_dim, np.float32))
        layer.finalize_state()
    metadata = {"model_name": arch, "class_names": list(EMOTIONS), "feature_set": feature_set}
    return FerModelClassifier(model, {**metadata, "feature_dim": feature_dim, "input_size": [48, 48]})


def time_pipeline(name: str, predictor, args: argparse.Namespace) -> float:
    """Warm up (trace the model, load the landmark model), then time ``--repeat`` runs; print and return median fps."""
    import cv2

    from inference.video import run_video

    capture = cv2.VideoCapture(str(args.video))
    ok, frame = capture.read()
    capture.release()
    for _ in range(3):  # first calls trace the tf.function (Keras) and load lazily imported parts
        predictor.predict(frame)
    rates = []
    for run in range(1, args.repeat + 1):
        predictor.timings = dict.fromkeys(predictor.timings, 0.0)
        predictor.calls = 0
        stats = run_video(predictor, str(args.video), display=False, every_ms=args.every_ms, max_frames=args.max_frames)
        per = {k: 1000 * v / max(1, predictor.calls) for k, v in predictor.timings.items()}
        stages = ", ".join(f"{k} {v:.1f}" for k, v in per.items())
        print(
            f"  {name} run {run}: {stats.frames} frames, {stats.predictions} predictions in {stats.seconds:.2f} s"
            f" = {stats.fps:.1f} fps   (ms per prediction: {stages})"
        )
        rates.append(stats.fps)
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import cv2

    from inference.classifiers import DEFAULT_MODEL_PATH, load_classifier
    from inference.predictor import FacePredictor

    capture = cv2.VideoCapture(str(args.video))
    frames, fps = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)), capture.get(cv2.CAP_PROP_FPS)
    size = f"{int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))}x{int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))}"
    capture.release()
    every = "every frame" if args.every_ms == 0 else f"at most every {args.every_ms:g} ms of video"
    print(f"video {args.video.name}: {frames} frames, {size}, {fps:.2f} fps; predictions {every}; headless, no file")
    print(f"machine: {cv2.getNumberOfCPUs()} CPUs (shared: timings are noisy)")

    if args.model is not None or DEFAULT_MODEL_PATH.is_file():
        classifier = load_classifier(args.model, args.backend)
        label = (
            f"ours: {args.model or DEFAULT_MODEL_PATH} (feature set {classifier.feature_set}, "
            f"backend {classifier.backend.name})"
        )
    else:
        classifier = untrained_classifier(args.arch, args.feature_set)
        label = (
            f"ours: model {args.arch}, UNTRAINED (no trained model yet; speed does not depend on the weights), "
            f"feature set {args.feature_set}"
        )
    print(f"{label}, detector {args.detector} at {args.detect_size} px")
    ours = time_pipeline(
        "ours",
        FacePredictor(classifier=classifier, pipeline=FacePipeline.for_video(
            detector=args.detector, detect_size=args.detect_size, align=args.align)),
        args,
    )
    verdict = "meets" if ours >= TARGET_FPS else "MISSES"
    summary = [f"ours: {ours:.1f} fps ({verdict} the {TARGET_FPS:g} fps target)"]

    if args.peer:
        if not args.peer_model.is_file():
            print(f"peer: {args.peer_model} absent, skipped")
        else:
            print(f"peer: {args.peer_model.name}, detector {args.peer_detector} at {args.detect_size} px, 64x64 input")
            peer = FacePredictor(args.peer_model, detector=args.peer_detector, detect_size=args.detect_size)
            summary.append(f"peer mini-Xception: {time_pipeline('peer', peer, args):.1f} fps")
    print("median end-to-end fps -> " + "; ".join(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
