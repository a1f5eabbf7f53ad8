"""Video records (predict_from_video.py --records, inference.records), track ids, and real-time playback pacing.

Headless: the videos are made here (the astronaut's face drifting across a frame) or read from
../shared/media/face_video_short.mp4 (skipped with a reason when absent). The model is a tiny untrained CNN.
"""

from __future__ import annotations

import csv
import json
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import save_tiny_model

import predict_from_video
from inference.playback import Pacer
from inference.predictor import make_prediction
from inference.records import RecordsError, RecordsWriter
from inference.video import FaceTracker, run_video

SHORT_VIDEO = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "face_video_short.mp4"
CLASSES = ["Angry", "Happy", "Neutral"]
FPS = 10.0


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.keras", CLASSES)


@pytest.fixture(scope="module")
def face_video(tmp_path_factory) -> Path:
    """12 frames, 480x320 at 10 fps: the astronaut's face (about 110 px) moving 4 px right per frame."""
    from skimage import data

    face = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[20:240, 110:330]
    path = tmp_path_factory.mktemp("video") / "drift.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (480, 320))
    for i in range(12):
        frame = np.full((320, 480, 3), 100, np.uint8)
        frame[50:270, 40 + 4 * i : 260 + 4 * i] = face
        writer.write(frame)
    writer.release()
    return path


def run_cli(video: Path, model: Path, records: Path, *extra: str) -> int:
    argv = ["--source", str(video), "--model", str(model), "--no-display", "--every-ms", "0", "--records"]
    return predict_from_video.main([*argv, str(records), *extra])


# ------------------------------------------------------------------------------------------------ records


def test_jsonl_records_one_row_per_face_per_prediction(face_video, model_path, tmp_path, capsys):
    out = tmp_path / "faces.jsonl"
    assert run_cli(face_video, model_path, out) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert "12 frames, 12 predictions" in capsys.readouterr().out
    assert len(rows) >= 10  # dlib may miss the face in a frame or two
    assert [r["frame"] for r in rows] == sorted({r["frame"] for r in rows})  # one face: one row per frame
    assert {r["track_id"] for r in rows} == {0}  # the same face throughout
    for row in rows:
        assert row["time_s"] == pytest.approx(row["frame"] / FPS, abs=1e-3)
        assert set(row["probabilities"]) == set(CLASSES)
        assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert row["confidence"] == max(row["probabilities"].values()) and row["emotion"] in CLASSES
        x, y, w, h = row["box"]
        assert 40 + 4 * row["frame"] <= x + w / 2 <= 260 + 4 * row["frame"]  # the box follows the face
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed


def test_csv_records_match_jsonl(face_video, model_path, tmp_path):
    assert run_cli(face_video, model_path, tmp_path / "faces.jsonl") == 0
    assert run_cli(face_video, model_path, tmp_path / "faces.csv") == 0
    with (tmp_path / "faces.csv").open(newline="") as handle:
        table = list(csv.DictReader(handle))
    rows = [json.loads(line) for line in (tmp_path / "faces.jsonl").read_text().splitlines()]
    header = ["frame", "time_s", "track_id", "x", "y", "w", "h", "emotion", "confidence"]
    assert list(table[0]) == header + [f"p_{c}" for c in CLASSES]
    assert len(table) == len(rows)
    for line, row in zip(table, rows, strict=True):
        assert [int(line[k]) for k in ("x", "y", "w", "h")] == row["box"]
        assert int(line["frame"]) == row["frame"] and int(line["track_id"]) == row["track_id"]
        assert float(line["p_Happy"]) == pytest.approx(row["probabilities"]["Happy"])


def test_existing_records_need_overwrite(face_video, model_path, tmp_path, capsys):
    out = tmp_path / "faces.csv"
    out.write_text("keep me\n")
    assert run_cli(face_video, model_path, out) == 1
    err = capsys.readouterr().err
    assert str(out) in err and "--overwrite" in err and "Traceback" not in err
    assert out.read_text() == "keep me\n"
    assert run_cli(face_video, model_path, out, "--overwrite") == 0
    assert out.read_text().startswith("frame,time_s,track_id")


def test_records_never_replace_the_input_and_need_a_known_suffix(face_video, model_path, tmp_path, capsys):
    video_as_csv = tmp_path / "clip.csv"
    video_as_csv.write_bytes(face_video.read_bytes())
    assert run_cli(video_as_csv, model_path, video_as_csv, "--overwrite") == 1
    assert "input video" in capsys.readouterr().err and video_as_csv.read_bytes() == face_video.read_bytes()
    with pytest.raises(SystemExit) as exit_:
        run_cli(face_video, model_path, tmp_path / "faces.txt")
    assert exit_.value.code == 2 and ".jsonl or .csv" in capsys.readouterr().err


def test_failed_run_leaves_no_file(tmp_path):
    out = tmp_path / "faces.jsonl"
    with pytest.raises(RuntimeError), RecordsWriter(out, CLASSES) as records:
        records.write(0, 0.0, [make_prediction((0, 0, 5, 5), [1, 0, 0], CLASSES)], [0])
        raise RuntimeError("the video broke")
    assert not out.exists() and not list(tmp_path.iterdir())
    (tmp_path / "folder.jsonl").mkdir()
    with pytest.raises(RecordsError, match="directory"):
        RecordsWriter(tmp_path / "folder.jsonl", CLASSES)


@pytest.mark.skipif(not SHORT_VIDEO.is_file(), reason=f"{SHORT_VIDEO} absent (no ../shared)")
def test_real_video_keeps_one_track(model_path, tmp_path):
    out = tmp_path / "faces.jsonl"
    assert run_cli(SHORT_VIDEO, model_path, out, "--max-frames", "60") == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) >= 30  # dlib at --detect-size 320 misses the face in some frames
    ids = Counter(r["track_id"] for r in rows)
    assert len(ids) == 1, ids  # one face in view all along: one track


def test_tracker_ids_follow_faces():
    left, right = (0, 0, 100, 100), (400, 0, 100, 100)
    for forget_ms, returning_id in [(0, 2), (2000, 0)]:
        tracker = FaceTracker(CLASSES, smooth=0.5, forget_ms=forget_ms)
        tracker.update([make_prediction(left, [1, 0, 0], CLASSES)], now_ms=0)
        assert tracker.ids == [0]
        moved_left = make_prediction((5, 0, 100, 100), [1, 0, 0], CLASSES)
        tracker.update([make_prediction(right, [0, 1, 0], CLASSES), moved_left], now_ms=100)
        assert tracker.ids == [1, 0]  # the new face on the right is track 1; the moved left face keeps 0
        tracker.update([make_prediction(right, [0, 1, 0], CLASSES)], now_ms=200)  # the detector misses the left
        tracker.update([make_prediction(left, [1, 0, 0], CLASSES), make_prediction(right, [0, 1, 0], CLASSES)], 300)
        assert tracker.ids == [returning_id, 1]  # back where it was lost: its old id, unless forgotten
        assert tracker.faces[0].probabilities["Angry"] == 1.0  # not smoothed with the lost face's probabilities


# ------------------------------------------------------------------------------------------------ pacing


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pacer_schedule_lateness_and_restart():
    clock = FakeClock()
    pacer = Pacer(25, clock=clock)  # 40 ms a frame
    assert pacer.delay_ms(1) == 40 and not pacer.late(1)
    clock.now += 0.07  # 30 ms behind frame 1: made up by waiting less, no need to skip a prediction
    assert not pacer.late(1) and pacer.delay_ms(2) == 10
    clock.now += 0.06  # 50 ms behind frame 2: more than a frame, skip work
    assert pacer.late(2) and pacer.delay_ms(3) == 0
    clock.now += 2.0  # far behind (a paused process): start again from now instead of racing
    assert not pacer.late(5) and pacer.restarts == 1 and pacer.delay_ms(6) == 40
    with pytest.raises(ValueError):
        Pacer(0)


class SlowPredictor:
    """Stands in for FacePredictor: one face per frame, each prediction taking ``seconds``."""

    class_names = tuple(CLASSES)

    def __init__(self, seconds: float):
        self.seconds, self.timings = seconds, {}

    def predict(self, frame):
        time.sleep(self.seconds)
        return [make_prediction((10, 10, 50, 50), [0.2, 0.5, 0.3], CLASSES)]


@pytest.mark.slow
def test_realtime_playback_drops_predictions_not_frames(tmp_path):
    video = tmp_path / "grey.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 20.0, (64, 48))
    for i in range(20):
        writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
    writer.release()
    slow = SlowPredictor(0.12)  # longer than a frame (50 ms)
    paced = run_video(slow, str(video), display=False, every_ms=0, realtime=True)
    fast = run_video(slow, str(video), display=False, every_ms=0, realtime=False)
    assert paced.frames == fast.frames == 20
    assert fast.predictions == 20  # unpaced: every frame, however long it takes
    assert paced.predictions <= 12  # paced: predictions skipped to keep to 20 fps
    assert paced.seconds >= 19 / 20 * 0.95  # and the clip was not played faster than its frame rate
