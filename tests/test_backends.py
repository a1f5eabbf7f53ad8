"""Classifier backends (inference.backends): ONNX Runtime against Keras, the twin choice, prediction without
TensorFlow, and ``predict.py --csv``.

The bundled model and its committed ONNX twin are compared on synthetic faces and, when ``../shared`` is present, on
real FER2013 PrivateTest faces (the full split: ``benchmarks/bench_onnx_parity.py``).
"""

from __future__ import annotations

import csv
import gzip
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import import_blocker

import predict
from inference.backends import BackendError, KerasBackend, OnnxBackend, open_backend, twin_problem
from inference.classifiers import DEFAULT_MODEL_PATH
from inference.predictor import FacePredictor

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_TWIN = DEFAULT_MODEL_PATH.with_suffix(".onnx")
ATOL = 1e-4  # issue 26: ONNX probabilities within 1e-4 of Keras'
PRIVATE_SAMPLE = 600  # PrivateTest faces in the test; the benchmark runs all 3,589


@pytest.fixture(scope="module")
def bundled_pair() -> tuple[OnnxBackend, KerasBackend]:
    if not BUNDLED_TWIN.is_file():
        pytest.fail(
            f"the bundled model's ONNX twin {BUNDLED_TWIN} is missing "
            "(python export.py --model models/pretrained/fer_model.keras --format onnx)"
        )
    return open_backend(DEFAULT_MODEL_PATH), open_backend(DEFAULT_MODEL_PATH, "keras")


def synthetic_faces(n: int = 64, seed: int = 0) -> np.ndarray:
    """(n, 48, 48) uint8: noise, smooth blobs, a drawn face (eyes, brows, mouth) at random sizes and contrasts."""
    rng = np.random.default_rng(seed)
    faces = np.empty((n, 48, 48), np.uint8)
    for i in range(n):
        kind = i % 3
        if kind == 0:
            faces[i] = rng.integers(0, 256, (48, 48))
        elif kind == 1:
            blob = cv2.GaussianBlur(rng.normal(128, 60, (48, 48)).astype(np.float32), (0, 0), rng.uniform(2, 6))
            faces[i] = np.clip(blob, 0, 255).astype(np.uint8)
        else:
            face = np.full((48, 48), int(rng.integers(90, 200)), np.uint8)
            cv2.ellipse(face, (24, 26), (17, 22), 0, 0, 360, int(rng.integers(140, 240)), -1)
            for x in (17, 31):
                cv2.circle(face, (x, 20), int(rng.integers(2, 4)), 30, -1)
                cv2.line(face, (x - 5, int(rng.integers(12, 16))), (x + 5, 14), 40, 2)
            smile = int(rng.integers(-6, 7))
            cv2.ellipse(face, (24, 35), (8, abs(smile) + 1), 0, 0 if smile >= 0 else 180, 180 if smile >= 0 else 360,
                        20, 2)
            faces[i] = face
    return faces


def assert_parity(onnx_probs: np.ndarray, keras_probs: np.ndarray) -> None:
    assert onnx_probs.dtype == np.float32 and onnx_probs.shape == keras_probs.shape
    np.testing.assert_allclose(onnx_probs, keras_probs, atol=ATOL, rtol=0)
    agree = np.mean(onnx_probs.argmax(axis=1) == keras_probs.argmax(axis=1))
    assert agree >= 0.999, f"top class agrees on {agree:.2%} of faces"
    np.testing.assert_allclose(onnx_probs.sum(axis=1), 1.0, atol=1e-5)


# ----------------------------------------------------------------------------------------------------- parity


def test_bundled_twin_matches_keras_on_synthetic_faces(bundled_pair):
    onnx_backend, keras_backend = bundled_pair
    assert (onnx_backend.name, keras_backend.name) == ("onnx", "keras")
    assert onnx_backend.metadata["class_names"] == keras_backend.metadata["class_names"]
    assert onnx_backend.metadata["config"] == keras_backend.metadata["config"]  # the same metadata, plus "export"
    faces = synthetic_faces()
    got, expected = onnx_backend.predict(faces), keras_backend.predict(faces)
    assert_parity(got, expected)
    assert len(set(expected.argmax(axis=1))) > 1  # the faces get different answers: the comparison means something
    np.testing.assert_allclose(onnx_backend.predict(faces[:1]), got[:1], atol=1e-6)  # batch size does not matter


def read_private_test(path: Path, limit: int) -> np.ndarray:
    """The first ``limit`` PrivateTest faces of fer2013.csv.gz, (n, 48, 48) uint8 (streamed; only they are parsed)."""
    faces = []
    with gzip.open(path, "rt") as handle:
        for line in handle:
            if line.rstrip().endswith(",PrivateTest"):
                faces.append(np.array(line.split(",")[1].split(), dtype=np.uint8).reshape(48, 48))
                if len(faces) == limit:
                    break
    return np.stack(faces)


def test_bundled_twin_matches_keras_on_private_test_faces(bundled_pair, fer_csv_gz):
    onnx_backend, keras_backend = bundled_pair
    faces = read_private_test(fer_csv_gz, PRIVATE_SAMPLE)
    assert faces.shape == (PRIVATE_SAMPLE, 48, 48)
    assert_parity(onnx_backend.predict(faces), keras_backend.predict(faces))


def test_bundled_int8_export_is_fresh_and_classifies_like_keras(bundled_pair, fer_csv_gz):
    """models/pretrained/fer_model.int8.onnx (export.py --int8): made from this very .keras file, quantized, and
    giving Keras's top class on nearly every real face (the float twin above is the one held to 1e-4)."""
    import json

    from models.export import export_sidecar_path, file_sha256

    path = DEFAULT_MODEL_PATH.with_suffix(".int8.onnx")
    export = json.loads(export_sidecar_path(path).read_text())["export"]
    assert export["source_sha256"] == file_sha256(DEFAULT_MODEL_PATH), (
        "stale: python export.py --model models/pretrained/fer_model.keras --format onnx --int8 "
        "--calibration ../shared/data/fer2013.csv.gz")
    assert export["quantization"]["type"] == "int8"
    faces = read_private_test(fer_csv_gz, PRIVATE_SAMPLE)
    got, expected = OnnxBackend(path).predict(faces), bundled_pair[1].predict(faces)
    agree = np.mean(got.argmax(axis=1) == expected.argmax(axis=1))
    assert agree >= 0.97, f"top class agrees on {agree:.1%} of {len(faces)} PrivateTest faces"
    assert np.abs(got - expected).max() > ATOL  # really the int8 graph, not a copy of the float one
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


# ------------------------------------------------------------------------------------- twin choice, fallback


def save_tiny_fernet(path: Path, seed: int = 0, feature_dim: int = 0) -> Path:
    """An untrained fernet of width 4 (a few thousand weights), saved with metadata by models.io."""
    import keras

    from models import build_model
    from models.io import save_model

    keras.utils.set_random_seed(seed)
    model = build_model("fernet", 3, feature_dim, width=4, keep_prob=0.8, batchnorm_conv=True)
    metadata = {"model_name": "fernet", "class_names": ["Angry", "Happy", "Sad"], "feature_set": "raw",
                "feature_dim": feature_dim, "input_size": [48, 48]}
    return save_model(model, path, metadata)


def test_keras_without_twin_falls_back_with_a_note_then_uses_the_twin(tmp_path, caplog):
    from models.export import write_onnx_twin

    path = save_tiny_fernet(tmp_path / "run" / "model.keras")
    faces = synthetic_faces(12)
    with caplog.at_level(logging.WARNING, logger="inference.backends"):
        predictor = FacePredictor(path, assume_face=True)
    assert predictor.backend_name == "keras"
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 1 and "no ONNX twin model.onnx" in notes[0]
    assert f"python export.py --model {path} --format onnx" in notes[0]
    expected = predictor.predict_faces(faces)
    with pytest.raises(BackendError, match="no ONNX twin"):
        FacePredictor(path, backend="onnx")

    twin = write_onnx_twin(path)
    assert twin == tmp_path / "run" / "model.onnx" and twin_problem(path) is None
    assert sorted(p.name for p in twin.parent.iterdir()) == ["model.keras", "model.meta.json", "model.onnx",
                                                             "model.onnx.meta.json"]  # no temporary files left
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="inference.backends"):
        predictor = FacePredictor(path, assume_face=True)
    assert predictor.backend_name == "onnx" and not caplog.records
    np.testing.assert_allclose(predictor.predict_faces(faces), expected, atol=ATOL)
    assert FacePredictor(twin, assume_face=True).backend_name == "onnx"  # an .onnx file given directly
    assert FacePredictor(path, assume_face=True, backend="keras").backend_name == "keras"


def test_stale_twin_is_not_used(tmp_path, caplog):
    from models.export import write_onnx_twin

    path = save_tiny_fernet(tmp_path / "model.keras", seed=0)
    write_onnx_twin(path)
    save_tiny_fernet(path, seed=1)  # retrained in place: the twin now describes other weights
    assert "stale" in twin_problem(path)
    with caplog.at_level(logging.WARNING, logger="inference.backends"):
        assert open_backend(path).name == "keras"
    assert "stale" in caplog.records[0].getMessage()
    with pytest.raises(BackendError, match="stale"):
        open_backend(path, "onnx")


def test_int8_backend_runs_the_int8_export_and_says_how_to_make_it(tmp_path):
    from inference.backends import needs_tensorflow
    from models.export import export_model, write_onnx_twin
    from tests.test_export import write_calibration_csv

    path = save_tiny_fernet(tmp_path / "model.keras")
    assert not needs_tensorflow(path, "int8")
    with pytest.raises(BackendError, match="no int8 export model.int8.onnx") as error:
        open_backend(path, "int8")
    assert f"python export.py --model {path} --format onnx --int8 --calibration" in str(error.value)
    twin = write_onnx_twin(path)
    with pytest.raises(BackendError, match="not an int8 export"):  # the float twin given with --backend int8
        open_backend(twin, "int8")
    int8 = export_model(path, "onnx", int8_calibration=write_calibration_csv(tmp_path / "fer.csv", 32),
                        calibration_faces=16)
    backend = open_backend(path, "int8")
    assert backend.name == "onnx" and backend.path == int8
    assert open_backend(path).path == twin  # auto still runs the float twin
    faces = synthetic_faces(12)
    got, expected = backend.predict(faces), open_backend(path, "keras").predict(faces)
    assert 0 < np.abs(got - expected).max() < 0.1
    assert open_backend(int8, "int8").path == int8  # the .int8.onnx file given directly
    predictor = FacePredictor(path, assume_face=True, backend="int8")  # what --backend int8 builds
    assert (predictor.backend_name, predictor.model_file) == ("onnx", "model.int8.onnx")
    assert FacePredictor(path, assume_face=True).model_file == "model.onnx"
    save_tiny_fernet(path, seed=1)  # retrained: both exports are stale now
    with pytest.raises(BackendError, match="int8 export model.int8.onnx was exported from a different version"):
        open_backend(path, "int8")


def test_onnx_without_metadata_and_peer_with_onnx_are_errors(tmp_path):
    from inference.classifiers import PredictorError

    bare = tmp_path / "bare.onnx"
    bare.write_bytes(BUNDLED_TWIN.read_bytes())
    with pytest.raises(BackendError, match="no metadata bare.onnx.meta.json"):
        open_backend(bare)
    with pytest.raises(BackendError, match="runs on ONNX Runtime"):
        open_backend(BUNDLED_TWIN, "keras")
    peer = tmp_path / "peer.hdf5"
    peer.write_bytes(b"not read")
    with pytest.raises(PredictorError, match="peer models run through Keras only"):
        FacePredictor(peer, backend="onnx")


# ------------------------------------------------------------------------------------------- no TensorFlow

# TensorFlow and everything that would bring it in
BLOCK_TENSORFLOW = import_blocker("tensorflow", "keras", "tf2onnx", "tf_keras")


def test_predict_video_and_folder_evaluation_run_without_tensorflow(tmp_path):
    photo = ROOT / "docs" / "astronaut.jpg"
    folder = tmp_path / "photos" / "happy"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "astronaut.png"), cv2.imread(str(photo)))
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (512, 512))
    frame = cv2.imread(str(photo))
    for shift in range(6):
        writer.write(np.roll(frame, 4 * shift, axis=1))
    writer.release()
    script = BLOCK_TENSORFLOW + textwrap.dedent(f"""
        import predict, predict_from_video
        from inference.folder_eval import evaluate_folder_run

        assert predict.main(["--image", {str(photo)!r}, "--csv", {str(tmp_path / "faces.csv")!r}]) == 0
        assert predict_from_video.main(["--source", {str(video)!r}, "--no-display", "--every-ms", "0",
                                        "--output", {str(tmp_path / "annotated.mp4")!r}]) == 0
        metrics = evaluate_folder_run({str(DEFAULT_MODEL_PATH)!r}, {str(tmp_path / "photos")!r},
                                      {str(tmp_path / "eval")!r}, verbose=0)
        assert metrics["n_images"] == 1
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        assert not loaded, loaded
        print("NO-TF-OK")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "NO-TF-OK" in done.stdout
    assert "Happy" in done.stdout and "6 frames, 6 predictions" in done.stdout
    assert "TensorFlow" not in done.stderr  # no fallback note: the bundled model ran on its twin
    assert (tmp_path / "annotated.mp4").is_file() and (tmp_path / "eval" / "folder_metrics.json").is_file()


def test_blocked_tensorflow_makes_a_twinless_keras_model_fail_clearly(tmp_path):
    """The guard above is real: a model that needs Keras cannot load with TensorFlow blocked."""
    path = save_tiny_fernet(tmp_path / "model.keras")
    script = BLOCK_TENSORFLOW + textwrap.dedent(f"""
        from inference.backends import open_backend
        try:
            open_backend({str(path)!r})
        except ImportError as err:
            print("BLOCKED", err)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "BLOCKED" in done.stdout, done.stderr[-2000:]


# ------------------------------------------------------------------------------------------------- --csv


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_csv_rows_for_faces_no_faces_and_unreadable_files(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    head = cv2.imread(str(ROOT / "docs" / "astronaut.jpg"))[20:240, 110:330]  # her face at about (69, 63), 88 px
    cv2.imwrite(str(photos / "a_two_faces.png"), np.hstack([head, head]))
    cv2.imwrite(str(photos / "b_blank.png"), np.full((200, 200), 128, np.uint8))
    (photos / "c_broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "tables" / "faces.csv"

    code = predict.main(["--image", str(photos), "--csv", str(out)])
    err = capsys.readouterr().err
    assert code == predict.EXIT_ERROR  # the unreadable file decides the exit code
    assert err.count("error:") == 1 and "c_broken.jpg" in err  # still the one-line error on stderr
    rows = read_csv(out)
    classes = list(FacePredictor(backend="onnx").class_names)
    assert list(rows[0]) == ["image", "status", "face", "x", "y", "w", "h", "emotion", "confidence", *classes,
                             "error"]
    assert [(Path(r["image"]).name, r["status"], r["face"]) for r in rows] == [
        ("a_two_faces.png", "face", "0"), ("a_two_faces.png", "face", "1"),
        ("b_blank.png", "no face", ""), ("c_broken.jpg", "unreadable", ""),
    ]
    left, right = rows[0], rows[1]
    assert int(left["x"]) + int(left["w"]) <= 220 <= int(right["x"])  # one face in each half, left to right
    assert 60 <= int(left["w"]) <= 120 and 60 <= int(right["w"]) <= 120
    for row in (left, right):
        probabilities = [float(row[c]) for c in classes]
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
        assert row["emotion"] == classes[int(np.argmax(probabilities))]
        assert float(row["confidence"]) == max(probabilities) and row["error"] == ""
    assert rows[2]["emotion"] == "" and rows[2]["x"] == ""
    assert "not an image" in rows[3]["error"]
    assert not [p for p in out.parent.iterdir() if p.name != "faces.csv"]  # no temporary file left

    before = out.read_text()
    assert predict.main(["--image", str(photos / "b_blank.png"), "--csv", str(out)]) == predict.EXIT_ERROR
    assert "exists; pass --overwrite" in capsys.readouterr().err and out.read_text() == before
    blank = ["--image", str(photos / "b_blank.png"), "--csv", str(out)]
    assert predict.main([*blank, "--overwrite"]) == predict.EXIT_NO_FACE
    assert [r["status"] for r in read_csv(out)] == ["no face"]


# ------------------------------------------------------------------------------------------ detector file


def test_bundled_detector_file_is_dlibs_frontal_detector(tmp_path):
    import dlib

    from inference.dlib_detector import DETECTOR_FILE, frontal_face_detector

    dlib.get_frontal_face_detector().save(str(tmp_path / "fresh.svm"))
    assert (tmp_path / "fresh.svm").read_bytes() == DETECTOR_FILE.read_bytes()
    grey = cv2.imread(str(ROOT / "docs" / "astronaut.jpg"), cv2.IMREAD_GRAYSCALE)
    boxes = [(r.left(), r.top(), r.width(), r.height()) for r in frontal_face_detector()(grey, 0)]
    assert len(boxes) == 1 and 150 <= boxes[0][0] + boxes[0][2] / 2 <= 260
    assert type(frontal_face_detector(tmp_path / "absent.svm")) is type(frontal_face_detector())  # the fallback
