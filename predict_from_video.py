"""Live facial expression recognition on a camera or a video file.

Each face gets a box and its expression with confidence; probabilities are smoothed across predictions, which run
at most every --every-ms milliseconds (boxes are drawn on every frame). Press 'q' in the window to quit.

    python predict_from_video.py --model runs/A/model.keras                    # camera 0, window
    python predict_from_video.py --source clip.mp4 --no-display --output annotated.mp4 --every-ms 0
    python predict_from_video.py --source 1 --detector haar --smooth 0.8 --max-frames 300
    python predict_from_video.py --source clip.mp4 --no-display --records faces.csv --every-ms 0

A file shown in the window plays at its own frame rate: predictions that fall due while the loop is behind are
skipped rather than slowing the video down; --no-display and --as-fast-as-possible process frames without pacing.
With --output the annotated video has the input's frame count, size and fps; it is written under a temporary name
and renamed when complete, and an --output that is the --source (even through a symlink) is refused. --records
writes one row per face per prediction (frame, time_s, track_id, box, emotion, confidence, one probability per
class; .jsonl or .csv; see inference/records.py); it never replaces a file without --overwrite. Defaults come from
parameters.VideoPredictor. Exit codes (errors.py): 0 done, 1 the camera cannot be opened, the file is not a video or
the output cannot be written, 2 a bad command line, 130 interrupted while loading.
"""

from __future__ import annotations

import argparse
import gc
import sys
from pathlib import Path

from config_fields import below_one, non_negative_float, positive_int
from errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, UserError
from inference.backends import add_backend_argument
from inference.classifiers import add_tta_argument
from inference.faces import FacePipeline, add_face_arguments, pipeline_from_args
from parameters import VideoPredictor


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = VideoPredictor()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--source", default=str(defaults.camera_source), help="camera index (0, 1, ...) or video file (default 0)"
    )
    add_face_arguments(parser, FacePipeline.for_video())
    add_backend_argument(parser)
    add_tta_argument(parser)
    parser.add_argument("--display", action=argparse.BooleanOptionalAction, default=True, help="show a window")
    parser.add_argument("--output", type=Path, help="write the annotated video here (.mp4)")
    parser.add_argument(
        "--every-ms",
        type=non_negative_float,
        default=defaults.time_to_wait_between_predictions * 1000,
        help="minimum milliseconds between predictions; 0: every frame (default %(default)g)",
    )
    parser.add_argument(
        "--smooth",
        type=below_one,
        default=defaults.smoothing,
        help="weight of the previous probabilities in the moving average, in [0, 1) (default %(default)g)",
    )
    parser.add_argument(
        "--records", type=Path, metavar="PATH", help="per-face rows of every prediction: a .jsonl or .csv file"
    )
    parser.add_argument(
        "--overwrite", action=argparse.BooleanOptionalAction, default=False, help="replace an existing --records file"
    )
    parser.add_argument(
        "--as-fast-as-possible",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="show a file as fast as frames are processed instead of at its frame rate",
    )
    parser.add_argument("--max-frames", type=positive_int, help="stop after this many frames")
    parser.add_argument(
        "--verbose", action=argparse.BooleanOptionalAction, default=False, help="show TensorFlow's own logging"
    )
    parser.add_argument("--show-confidence", action=argparse.BooleanOptionalAction, default=defaults.show_confidence)
    parser.add_argument(
        "--print-emotions",
        action=argparse.BooleanOptionalAction,
        default=defaults.print_emotions,
        help="print each prediction to stdout",
    )
    args = parser.parse_args(argv)
    if args.records is not None and args.records.suffix.lower() not in (".jsonl", ".csv"):
        parser.error(f"--records {args.records}: name a .jsonl or .csv file")
    if not args.display and args.output is None and args.records is None:
        print("note: --no-display without --output: predictions are computed but nothing is shown or saved")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from contextlib import nullcontext

    from inference.outputs import check_not_inputs, check_video_writable
    from inference.records import RecordsWriter, check_records_path
    from inference.video import check_display, open_source, parse_source, run_video

    def print_faces(frame_index, faces):
        for face in faces:
            print(f"frame {frame_index}  box={face.box}  {face.emotion}  {face.confidence:.3f}", flush=True)

    try:
        # Fail on a bad source, output or display before spending seconds loading the model.
        source = parse_source(args.source)
        if args.output is not None:
            check_video_writable(args.output)
            if isinstance(source, str) and "://" not in source:
                check_not_inputs([("--output", args.output)], [Path(source)])
        if args.display:
            check_display()
        open_source(source).release()
        if args.records is not None:  # before the model loads: a refused name costs nothing
            inputs = [] if isinstance(source, int) else [Path(source)]
            check_records_path(args.records, overwrite=args.overwrite, inputs=inputs)
        from inference.backends import needs_tensorflow
        from inference.classifiers import DEFAULT_MODEL_PATH
        from tf_logging import quiet_tensorflow

        if needs_tensorflow(args.model or DEFAULT_MODEL_PATH, args.backend):  # an ONNX twin needs no TensorFlow
            quiet_tensorflow(args.verbose)
        from inference.predictor import FacePredictor

        predictor = FacePredictor(args.model, pipeline=pipeline_from_args(args), backend=args.backend, tta=args.tta)
        records = RecordsWriter(args.records, predictor.class_names, overwrite=args.overwrite) if args.records else None
        with records or nullcontext():
            stats = run_video(
                predictor,
                args.source,
                display=args.display,
                output=args.output,
                every_ms=args.every_ms,
                smooth=args.smooth,
                max_frames=args.max_frames,
                show_confidence=args.show_confidence,
                on_prediction=print_faces if args.print_emotions else None,
                on_tracks=records.write if records else None,
                realtime=args.display and not args.as_fast_as_possible,
            )
    except (UserError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:  # before the loop, which handles Ctrl-C itself
        print("\ninterrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    written = f"; wrote {stats.output}" if stats.output else ""
    if records is not None:
        written += f"; {records.rows} records in {records.path}"
    timing = f"in {stats.seconds:.1f} s ({stats.fps:.1f} fps)"
    print(f"{stats.frames} frames, {stats.predictions} predictions {timing}{written}")
    return EXIT_OK


if __name__ == "__main__":
    status = main()
    # Python's last garbage collection walks all of TensorFlow's objects: seconds on a busy machine between 'q' (or
    # Ctrl-C) and the end of the process. Nothing left needs collecting, so exempt them.
    gc.freeze()
    raise SystemExit(status)
