"""Live facial expression recognition on a camera or a video file.

Each face gets a box and its expression with confidence; probabilities are smoothed across predictions, which run
at most every --every-ms milliseconds (boxes are drawn on every frame). Press 'q' in the window to quit.

    python predict_from_video.py --model runs/A/model.keras                    # camera 0, window
    python predict_from_video.py --source clip.mp4 --no-display --output annotated.mp4 --every-ms 0
    python predict_from_video.py --source 1 --detector haar --smooth 0.8 --max-frames 300

With --output the annotated video has the input's frame count, size and fps. Defaults come from
parameters.VideoPredictor. Exit code 1 when the camera cannot be opened or the file is not a video.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from inference.faces import FacePipeline, add_face_arguments, pipeline_from_args
from parameters import VideoPredictor


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = VideoPredictor()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--source", default=str(defaults.camera_source), help="camera index (0, 1, ...) or video file (default 0)"
    )
    add_face_arguments(parser, FacePipeline.for_video())
    parser.add_argument("--display", action=argparse.BooleanOptionalAction, default=True, help="show a window")
    parser.add_argument("--output", type=Path, help="write the annotated video here (.mp4)")
    parser.add_argument(
        "--every-ms",
        type=float,
        default=defaults.time_to_wait_between_predictions * 1000,
        help="minimum milliseconds between predictions; 0: every frame (default %(default)g)",
    )
    parser.add_argument(
        "--smooth",
        type=float,
        default=defaults.smoothing,
        help="weight of the previous probabilities in the moving average, in [0, 1) (default %(default)g)",
    )
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    parser.add_argument("--show-confidence", action=argparse.BooleanOptionalAction, default=defaults.show_confidence)
    parser.add_argument(
        "--print-emotions",
        action=argparse.BooleanOptionalAction,
        default=defaults.print_emotions,
        help="print each prediction to stdout",
    )
    args = parser.parse_args(argv)
    if args.every_ms < 0:
        parser.error(f"--every-ms {args.every_ms} must be >= 0")
    if not 0 <= args.smooth < 1:
        parser.error(f"--smooth {args.smooth} must lie in [0, 1)")
    if args.max_frames is not None and args.max_frames < 1:
        parser.error(f"--max-frames {args.max_frames} must be >= 1")
    if not args.display and args.output is None:
        print("note: --no-display without --output: predictions are computed but nothing is shown or saved")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from inference.predictor import FacePredictor, PredictorError
    from inference.video import check_display, open_source, run_video

    def print_faces(frame_index, faces):
        for face in faces:
            print(f"frame {frame_index}  box={face.box}  {face.emotion}  {face.confidence:.3f}", flush=True)

    try:
        # Fail on a bad source or a missing display before spending seconds loading the model.
        if args.display:
            check_display()
        open_source(args.source).release()
        predictor = FacePredictor(args.model, pipeline=pipeline_from_args(args))
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
        )
    except (PredictorError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    written = f"; wrote {stats.output}" if stats.output else ""
    timing = f"in {stats.seconds:.1f} s ({stats.fps:.1f} fps)"
    print(f"{stats.frames} frames, {stats.predictions} predictions {timing}{written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
