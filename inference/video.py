"""The video loop of ``predict_from_video.py`` (and ``benchmarks/bench_video.py``): read frames from a camera or a
file, run the face pipeline at most every ``every_ms`` milliseconds, draw the last prediction's boxes and labels on
every frame, smooth each face's probabilities across predictions, show and/or write the annotated frames.

Timing of predictions: for a file, the video's own clock (frame index / fps), so the written video does not depend
on how fast this machine is; for a camera, the wall clock. ``every_ms=0`` predicts on every frame.

Faces are tracked from one prediction to the next by box overlap (IoU): a face matched to a track gets the track's
smoothed probabilities ``smooth * previous + (1 - smooth) * new``; new faces start fresh; lost faces are dropped.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from inference.classifiers import PredictorError
from inference.drawing import draw_fps, draw_predictions
from inference.faces import Box
from inference.outputs import temporary_path
from inference.playback import Pacer
from inference.predictor import FacePrediction, FacePredictor, make_prediction

QUIT_KEY = "q"
FALLBACK_FPS = 30.0  # cameras often report 0 fps


class VideoSourceError(PredictorError):
    """A camera that cannot be opened or a file that is not a readable video."""


def parse_source(source: str | int) -> str | int:
    """``"0"`` -> camera 0; anything else is a file path (or a URL OpenCV understands)."""
    if isinstance(source, int):
        return source
    return int(source) if source.strip().isdigit() else source


def open_source(source: str | int) -> cv2.VideoCapture:
    """Open a camera index or a video file; VideoSourceError with a clear message when that fails."""
    source = parse_source(source)
    if isinstance(source, int):
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            raise VideoSourceError(f"cannot open camera {source} (no such device, or it is busy)")
        return capture
    if "://" not in source:
        path = Path(source)
        if not path.exists():
            raise VideoSourceError(f"{path}: no such file")
        if path.is_dir():
            raise VideoSourceError(f"{path}: is a directory, not a video")
    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise VideoSourceError(f"{source}: not a video OpenCV can read")
    return capture


def box_iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Keeps one smoothed probability vector per face across predictions (greedy IoU matching).

    ``hold_ms``: a face the detector misses stays (box and probabilities frozen) until it has been unseen this
    long, so a single missed detection does not make the box flicker when predicting on every frame.
    ``ids[i]`` is the track id of ``faces[i]``: 0, 1, 2... in order of first sight, kept while the face is matched.
    A face the detector lost for up to ``forget_ms`` gets its old id back when it is found again where it was
    (IoU >= ``min_iou``), so a face that stays in view keeps one id through missed detections.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        smooth: float = 0.6,
        min_iou: float = 0.3,
        hold_ms: float = 0.0,
        forget_ms: float = 2000.0,
    ):
        if not 0 <= smooth < 1:
            raise ValueError(f"smooth {smooth} must lie in [0, 1)")
        self.class_names = tuple(class_names)
        self.smooth, self.min_iou, self.hold_ms, self.forget_ms = smooth, min_iou, hold_ms, forget_ms
        self.faces: list[FacePrediction] = []  # the current smoothed predictions, drawn on every frame
        self.ids: list[int] = []  # the track id of each of self.faces
        self._seen_ms: list[float] = []  # when each of self.faces was last detected
        self._next_id = 0
        self._lost: list[tuple[Box, int, float]] = []  # (last box, track id, last seen) of faces no longer drawn

    def update(self, predictions: Sequence[FacePrediction], now_ms: float = 0.0) -> list[FacePrediction]:
        """Match ``predictions`` to the previous faces, smooth, and return (and keep) the current faces."""
        pairs = sorted(
            (
                (box_iou(new.box, old.box), i, j)
                for i, new in enumerate(predictions)
                for j, old in enumerate(self.faces)
            ),
            reverse=True,
        )
        match: dict[int, int] = {}
        used: set[int] = set()
        for iou, i, j in pairs:
            if iou < self.min_iou:
                break
            if i not in match and j not in used:
                match[i] = j
                used.add(j)
        faces, seen, ids = [], [], []
        for i, new in enumerate(predictions):
            probs = np.array([new.probabilities[c] for c in self.class_names])
            if i in match:
                old = self.faces[match[i]]
                previous = np.array([old.probabilities[c] for c in self.class_names])
                probs = self.smooth * previous + (1 - self.smooth) * probs
                ids.append(self.ids[match[i]])
            else:
                ids.append(self._recall(new.box, now_ms))
            faces.append(make_prediction(new.box, probs, self.class_names, new.face))
            seen.append(now_ms)
        for j, old in enumerate(self.faces):
            if j not in used and now_ms - self._seen_ms[j] <= self.hold_ms:
                faces.append(old)
                seen.append(self._seen_ms[j])
                ids.append(self.ids[j])
            elif j not in used:
                self._lost.append((old.box, self.ids[j], self._seen_ms[j]))
        self.faces, self._seen_ms, self.ids = faces, seen, ids
        return faces

    def _recall(self, box: Box, now_ms: float) -> int:
        """The id of a recently lost face at ``box``, else a new id."""
        self._lost = [lost for lost in self._lost if now_ms - lost[2] <= self.forget_ms]
        best = max(self._lost, key=lambda lost: box_iou(box, lost[0]), default=None)
        if best is not None and box_iou(box, best[0]) >= self.min_iou:
            self._lost.remove(best)
            return best[1]
        self._next_id += 1
        return self._next_id - 1


@dataclass
class VideoStats:
    """What one run did: frames read (= written), predictions made, wall seconds, end-to-end fps."""

    frames: int = 0
    predictions: int = 0
    seconds: float = 0.0
    source_fps: float = 0.0
    output: Path | None = None
    quit_by_user: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def check_display() -> None:
    # Without a display server OpenCV's GUI backend aborts the whole process, which no except clause catches.
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise VideoSourceError("no display available (DISPLAY is not set): use --no-display, with --output to save")


def run_video(
    predictor: FacePredictor,
    source: str | int,
    *,
    display: bool = True,
    output: str | Path | None = None,
    every_ms: float = 500.0,
    smooth: float = 0.6,
    hold_ms: float = 200.0,
    max_frames: int | None = None,
    show_confidence: bool = True,
    show_fps: bool = True,
    on_prediction: Callable[[int, list[FacePrediction]], None] | None = None,
    on_tracks: Callable[[int, float, list[FacePrediction], list[int]], None] | None = None,
    realtime: bool = False,
    window_name: str = "facial expression (q quits)",
) -> VideoStats:
    """Run the loop until the source ends, ``max_frames`` frames were read, or 'q' is pressed in the window.

    ``output``: write every annotated frame to this file (mp4v codec, the source's size and fps), under a temporary
    name renamed to ``output`` when the loop ends (also on 'q' or Ctrl-C); removed if the loop fails.
    ``hold_ms``: keep showing a face the detector lost for this long (see FaceTracker).
    ``on_prediction(frame_index, smoothed_predictions)`` is called after each prediction (e.g. to print them);
    ``on_tracks(frame_index, seconds, smoothed_predictions, track_ids)`` too (``--records``), with the time on the
    video's clock (a camera's: since the start).
    ``realtime``: play a file at its own frame rate (see inference.playback.Pacer): predictions due while the loop is
    behind the clock are skipped, the video does not slow down. Ignored for cameras, which pace themselves.
    Raises VideoSourceError for a source that cannot be opened or yields no frame.
    """
    if every_ms < 0:
        raise ValueError(f"every_ms {every_ms} must be >= 0")
    if display:
        check_display()
    source = parse_source(source)
    capture = open_source(source)
    is_camera = isinstance(source, int)
    source_fps = capture.get(cv2.CAP_PROP_FPS)
    if not source_fps or not np.isfinite(source_fps) or source_fps <= 0 or source_fps > 1000:
        source_fps = FALLBACK_FPS
    tracker = FaceTracker(predictor.class_names, smooth=smooth, hold_ms=hold_ms)
    pacer = Pacer(source_fps) if realtime and not is_camera else None
    stats = VideoStats(source_fps=source_fps, output=Path(output) if output else None)
    writer = None
    partial = temporary_path(Path(output)) if output is not None else None
    keep = False  # whether the partial video becomes ``output``
    last_prediction_ms: float | None = None
    fps_estimate = 0.0
    start = previous = time.perf_counter()
    try:
        while max_frames is None or stats.frames < max_frames:
            ok, frame = capture.read()
            if not ok or frame is None:
                break
            now_ms = (time.perf_counter() - start) * 1000 if is_camera else stats.frames * 1000 / source_fps
            due = last_prediction_ms is None or now_ms - last_prediction_ms >= every_ms
            if due and not (pacer is not None and stats.predictions and pacer.late(stats.frames)):
                detected = predictor.predict(frame)
                faces = tracker.update(detected, now_ms)[: len(detected)]  # held (undetected) faces come last
                last_prediction_ms = now_ms
                stats.predictions += 1
                if on_prediction is not None:
                    on_prediction(stats.frames, faces)
                if on_tracks is not None:
                    on_tracks(stats.frames, now_ms / 1000, faces, tracker.ids[: len(faces)])
            draw_predictions(frame, tracker.faces, show_confidence=show_confidence)
            now = time.perf_counter()
            frame_fps = 1.0 / max(now - previous, 1e-6)
            fps_estimate = frame_fps if fps_estimate == 0 else 0.9 * fps_estimate + 0.1 * frame_fps
            previous = now
            if show_fps:
                draw_fps(frame, fps_estimate)
            if output is not None:
                if writer is None:
                    writer = _open_writer(partial, source_fps, frame.shape[1], frame.shape[0], Path(output))
                writer.write(frame)
            stats.frames += 1
            wait_ms = pacer.delay_ms(stats.frames) if pacer is not None else 0  # until the next frame is due
            if display:
                cv2.imshow(window_name, frame)
                key = cv2.waitKey(max(1, wait_ms)) & 0xFF
                closed = cv2.getWindowProperty(window_name, cv2.WND_PROP_VISIBLE) < 1
                if key == ord(QUIT_KEY) or closed:
                    stats.quit_by_user = True
                    break
            elif wait_ms:
                time.sleep(wait_ms / 1000)
        keep = True
    except KeyboardInterrupt:  # Ctrl-C on a headless camera run: keep what was written
        stats.quit_by_user = keep = True
    finally:
        stats.seconds = time.perf_counter() - start
        capture.release()
        if writer is not None:
            writer.release()
        if partial is not None:
            if keep and writer is not None:
                os.replace(partial, output)
            partial.unlink(missing_ok=True)
        if display:
            cv2.destroyAllWindows()
    if stats.frames == 0:
        raise VideoSourceError(f"{source}: no frame could be read (not a video, or an empty one)")
    stats.timings = dict(predictor.timings)
    return stats


def _open_writer(path: Path, fps: float, width: int, height: int, final: Path) -> cv2.VideoWriter:
    """An mp4v writer on ``path`` (the temporary name); errors name ``final``, the path the user gave."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise VideoSourceError(f"{final}: cannot create its folder ({err.strerror or err})") from None
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise VideoSourceError(f"{final}: cannot write a video here (use a .mp4 name in a writable folder)")
    return writer
