"""benchmarks/bench_wild.py's scoring and file selection, on tiny synthetic folders."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_wild  # noqa: E402


def test_no_face_counts_as_wrong_and_as_no_class():
    labels = np.array([3, 3, 3, 6])
    predicted = np.array([3, -1, 6, 6])
    s = bench_wild.scores(labels, predicted)
    assert s["accuracy"] == pytest.approx(0.5)
    assert s["recall"] == {"Happy": pytest.approx(1 / 3), "Neutral": 1.0}
    # Happy: precision 1, recall 1/3 -> F1 0.5; Neutral: precision 1/2, recall 1 -> F1 2/3; 5 absent classes 0
    assert s["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 7)


def test_wild_files_reads_class_folders_and_limits_evenly(tmp_path):
    for name, n in (("happy", 6), ("Sad", 4)):
        (tmp_path / name).mkdir()
        for i in range(n):
            cv2.imwrite(str(tmp_path / name / f"{i}.jpg"), np.zeros((8, 8), np.uint8))
    (tmp_path / "happy" / "notes.txt").write_text("not an image")
    files = bench_wild.wild_files(tmp_path, None)
    assert sorted(label for _, label in files) == [3] * 6 + [4] * 4
    limited = bench_wild.wild_files(tmp_path, 5)
    assert len(limited) == 5 and {label for _, label in limited} == {3, 4}


def test_tta_and_equalize_rows_wrap_each_model(tmp_path):
    from parameters import EMOTIONS
    from tests.conftest import save_tiny_model

    model = save_tiny_model(tmp_path / "m.keras", list(EMOTIONS))
    rows = bench_wild.load_models([model], tta=["flip", "ten-crop"], equalize=["clahe"])
    assert [name for name, _ in rows] == ["m (m.keras)", "m (m.keras) + flip TTA", "m (m.keras) + ten-crop TTA",
                                          "m (m.keras) + clahe"]
    faces = np.random.default_rng(0).integers(0, 120, (3, 48, 48), dtype=np.uint8)  # dark faces: CLAHE changes them
    plain, flip, ten, clahe = (classifier(faces) for _, classifier in rows)
    for probabilities in (flip, ten, clahe):
        assert probabilities.shape == (3, len(EMOTIONS)) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
        assert not np.allclose(probabilities, plain)
    equalized = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(4, 4))
    np.testing.assert_allclose(clahe, rows[0][1](np.stack([equalized.apply(f) for f in faces])), rtol=1e-5)


def test_model_labels_never_merge_two_models(tmp_path):
    from inference.classifiers import DEFAULT_MODEL_PATH

    paths = [DEFAULT_MODEL_PATH, tmp_path / "run15" / "model.keras", tmp_path / "run17" / "model.keras",
             tmp_path / "a" / "fer2013_mini_XCEPTION.102-0.66.hdf5", tmp_path / "a" / "x.keras",
             tmp_path / "b" / "x.keras", tmp_path / "c" / "run17" / "model.keras"]
    labels = bench_wild.model_labels(paths)
    assert labels[:6] == ["bundled (fer_model.keras)", "run15 (model.keras)", f"run17 ({paths[2]})",
                          "mini_XCEPTION (fer2013_mini_XCEPTION.102-0.66.hdf5)", "a/x (x.keras)", "b/x (x.keras)"]
    assert labels[6] == f"run17 ({paths[6]})" and len(set(labels)) == len(labels)


class Side64:
    """A stand-in classifier of input side 64 (as the peers have) that answers like the model it wraps."""

    def __init__(self, classifier):
        self.classifier, self.class_names, self.input_size = classifier, classifier.class_names, 64

    def __call__(self, faces):
        return self.classifier(np.stack([cv2.resize(f, (48, 48)) for f in faces]))


def test_cache_reuses_the_framed_faces_and_misses_on_another_pipeline(tmp_path, monkeypatch):
    """--cache: a second run reads the faces back without detecting anything and predicts exactly the same; a model
    of another input side, another pipeline or another image set is not served from a file that lacks it."""
    from inference.faces import FaceFinder, FacePipeline
    from parameters import EMOTIONS
    from tests.conftest import save_tiny_model

    photo = cv2.imread(str(Path(__file__).resolve().parents[1] / "docs" / "astronaut.jpg"))
    for name in ("happy", "sad"):
        (tmp_path / "set" / name).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "set" / name / "face.jpg"), photo)
        cv2.imwrite(str(tmp_path / "set" / name / "blank.jpg"), np.zeros((64, 64, 3), np.uint8))
    files = bench_wild.wild_files(tmp_path / "set", None)
    tiny = bench_wild.load_models([save_tiny_model(tmp_path / "m.keras", list(EMOTIONS))])[0][1]
    models, wide = [("m", tiny)], [("m64", Side64(tiny))]
    pipeline, cache = FacePipeline(detector="dlib", detect_size=512), tmp_path / "cache"
    stats, rows = bench_wild.run_pipeline(files, pipeline, models, False, cache, "set")
    assert stats["found"] == 2 and [p >= 0 for p in rows[0].predicted] == [False, True, False, True]
    assert len(list(cache.glob("set-*.npz"))) == 1

    def no_detection(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    with monkeypatch.context() as patch:
        patch.setattr(FaceFinder, "detect", no_detection)
        again_stats, again = bench_wild.run_pipeline(files, pipeline, models, False, cache, "set")
        assert again[0].predicted == rows[0].predicted and again_stats["found"] == 2
        for other_files, other_pipeline, other_models in (
            (files, pipeline, wide),  # faces framed at 64 were never kept
            (files, FacePipeline(detector="dlib", detect_size=640), models),
            (files[:3], pipeline, models),
        ):
            with pytest.raises(AssertionError, match="the cache should have answered"):
                bench_wild.run_pipeline(other_files, other_pipeline, other_models, False, cache, "set")
    bench_wild.run_pipeline(files, pipeline, wide, False, cache, "set")  # frames both sides again, in one file
    with monkeypatch.context() as patch:
        patch.setattr(FaceFinder, "detect", no_detection)
        _, both = bench_wild.run_pipeline(files, pipeline, models + wide, False, cache, "set")
    assert both[0].predicted == rows[0].predicted and [p >= 0 for p in both[1].predicted] == [False, True, False, True]
