"""Video loop (inference.video) and predict_from_video.py, headless (never opens a window).

The real-video tests read ../shared/media/face_video_short.mp4 and are skipped with a reason when ../shared is
absent; the others make their own small videos in tmp_path. The model is a tiny untrained CNN built on the fly.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import save_tiny_model

import predict_from_video
from inference.predictor import FacePredictor, make_prediction
from inference.video import FaceTracker, VideoSourceError, box_iou, run_video

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHORT_VIDEO = SHARED / "media" / "face_video_short.mp4"
needs_short_video = pytest.mark.skipif(not SHORT_VIDEO.is_file(), reason=f"{SHORT_VIDEO} absent (no ../shared)")
CLASSES = ["Angry", "Happy", "Neutral"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.keras", CLASSES)


def frame_count(path: Path) -> tuple[int, float, tuple[int, int]]:
    """Frames actually decodable, fps and (width, height) of a video file."""
    capture = cv2.VideoCapture(str(path))
    fps, size = capture.get(cv2.CAP_PROP_FPS), (int(capture.get(3)), int(capture.get(4)))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count, fps, size


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames[0].shape[1::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


# ------------------------------------------------------------------------------------------------- tracking


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)


def test_tracker_smooths_matched_faces_only():
    tracker = FaceTracker(CLASSES, smooth=0.5)
    first = tracker.update([make_prediction((0, 0, 100, 100), [1.0, 0.0, 0.0], CLASSES)])
    assert first[0].emotion == "Angry"
    # Same face moved a little: smoothed halfway. A new face far away: its own probabilities.
    faces = tracker.update(
        [
            make_prediction((5, 5, 100, 100), [0.0, 1.0, 0.0], CLASSES),
            make_prediction((400, 0, 100, 100), [0.0, 0.0, 1.0], CLASSES),
        ]
    )
    assert faces[0].probabilities == pytest.approx({"Angry": 0.5, "Happy": 0.5, "Neutral": 0.0})
    assert faces[1].probabilities == pytest.approx({"Angry": 0.0, "Happy": 0.0, "Neutral": 1.0})
    # smooth=0 means no memory.
    plain = FaceTracker(CLASSES, smooth=0.0)
    plain.update([make_prediction((0, 0, 100, 100), [1.0, 0.0, 0.0], CLASSES)])
    assert plain.update([make_prediction((0, 0, 100, 100), [0.0, 1.0, 0.0], CLASSES)])[0].emotion == "Happy"
    # A face missed by the detector is held for hold_ms, then dropped.
    held = FaceTracker(CLASSES, hold_ms=100)
    held.update([make_prediction((0, 0, 100, 100), [1.0, 0.0, 0.0], CLASSES)], now_ms=0)
    assert [f.box for f in held.update([], now_ms=80)] == [(0, 0, 100, 100)]
    assert held.update([], now_ms=120) == []
    with pytest.raises(ValueError, match="smooth"):
        FaceTracker(CLASSES, smooth=1.0)


# ----------------------------------------------------------------------------------------------- video loop


def test_every_ms_limits_predictions_and_output_keeps_frames(model_path, tmp_path):
    """20 frames at 10 fps = 100 ms per frame: every 250 ms -> frames 0, 3, 6, ... predicted; all frames written."""
    from skimage import data

    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    source = write_video(tmp_path / "in.mp4", [face] * 20)
    predicted = []
    stats = run_video(
        FacePredictor(model_path),
        str(source),
        display=False,
        output=tmp_path / "out.mp4",
        every_ms=250,
        on_prediction=lambda i, faces: predicted.append((i, len(faces))),
    )
    assert [i for i, _ in predicted] == [0, 3, 6, 9, 12, 15, 18]
    # The astronaut's face each time (dlib also reports a weak false positive on some compressed frames).
    assert all(n >= 1 for _, n in predicted)
    assert stats.frames == 20 and stats.predictions == 7
    count, fps, size = frame_count(tmp_path / "out.mp4")
    assert (count, size) == (20, (512, 512)) and fps == pytest.approx(10.0, rel=1e-3)


def test_not_a_video_is_a_clear_error(model_path, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n")
    predictor = FacePredictor(model_path)
    with pytest.raises(VideoSourceError, match="notes.txt"):
        run_video(predictor, str(text), display=False)
    with pytest.raises(VideoSourceError, match="no such file"):
        run_video(predictor, str(tmp_path / "missing.mp4"), display=False)


def test_cli_bad_sources_exit_nonzero(model_path, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("not a video\n")
    assert predict_from_video.main(["--source", str(text), "--model", str(model_path), "--no-display"]) == 1
    assert "notes.txt" in capsys.readouterr().err
    # A camera index that cannot exist on any machine.
    assert predict_from_video.main(["--source", "97", "--model", str(model_path), "--no-display"]) == 1
    assert "cannot open camera 97" in capsys.readouterr().err


def test_cli_rejects_bad_flags():
    with pytest.raises(SystemExit):
        predict_from_video.parse_args(["--smooth", "1.5"])
    with pytest.raises(SystemExit):
        predict_from_video.parse_args(["--every-ms", "-1"])
    with pytest.raises(SystemExit):
        predict_from_video.parse_args(["--detector", "mtcnn"])


@pytest.mark.shared
@needs_short_video
def test_short_video_headless_keeps_frame_count(model_path, tmp_path, capsys):
    out = tmp_path / "annotated.mp4"
    argv = ["--source", str(SHORT_VIDEO), "--model", str(model_path), "--no-display", "--output", str(out)]
    assert predict_from_video.main([*argv, "--every-ms", "0", "--print-emotions"]) == 0
    printed = capsys.readouterr().out
    expected_count, expected_fps, expected_size = frame_count(SHORT_VIDEO)
    count, fps, size = frame_count(out)
    assert (count, size) == (expected_count, expected_size)
    assert fps == pytest.approx(expected_fps, rel=1e-3)
    # One printed line per prediction with a face; dlib finds the face on ~90 of the 115 frames (it misses
    # some turned-away ones even at full resolution).
    face_lines = [line for line in printed.splitlines() if line.startswith("frame ")]
    assert 0.6 * expected_count <= len(face_lines) <= expected_count
    assert f"{expected_count} frames" in printed


@pytest.mark.shared
@needs_short_video
def test_short_video_max_frames(model_path, tmp_path):
    stats = run_video(
        FacePredictor(model_path, detector="haar"),
        str(SHORT_VIDEO),
        display=False,
        output=tmp_path / "head.mp4",
        max_frames=10,
    )
    assert stats.frames == 10 and stats.predictions >= 1
    assert frame_count(tmp_path / "head.mp4")[0] == 10
