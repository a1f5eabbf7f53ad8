"""Temperature scaling, the expected calibration error, calibrate.py, and predict.py --min-confidence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inference.calibration import (
    UNCERTAIN,
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    mark_uncertain,
    model_temperature,
    negative_log_likelihood,
)
from tests.test_predict import CLASSES, save_tiny_model
from tests.test_train import write_converted


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _sampled(n: int = 20000, k: int = 7, seed: int = 0):
    """Logits and labels drawn from softmax(logits): softmax(logits) is calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, k))
    truth = _softmax(logits)
    labels = (truth.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return logits, labels


def test_temperature_keeps_the_argmax_and_softens_or_sharpens():
    probs = _softmax(np.random.default_rng(1).normal(0, 2, (50, 7))).astype(np.float32)
    np.testing.assert_allclose(apply_temperature(probs, 1.0), probs, atol=1e-6)
    for t in (0.5, 2.0):
        scaled = apply_temperature(probs, t)
        np.testing.assert_array_equal(scaled.argmax(axis=1), probs.argmax(axis=1))
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0, atol=1e-5)
    assert (apply_temperature(probs, 2.0).max(axis=1) < probs.max(axis=1)).all()
    assert (apply_temperature(probs, 0.5).max(axis=1) > probs.max(axis=1)).all()
    with pytest.raises(ValueError, match="temperature"):
        apply_temperature(probs, 0.0)


def test_fit_recovers_the_temperature_of_an_overconfident_model():
    logits, labels = _sampled()
    overconfident = _softmax(2.5 * logits)  # the calibrated answer is T = 2.5
    t = fit_temperature(overconfident, labels)
    assert t == pytest.approx(2.5, rel=0.08)
    scaled = apply_temperature(overconfident, t)
    assert negative_log_likelihood(scaled, labels) < negative_log_likelihood(overconfident, labels)
    assert fit_temperature(_softmax(0.5 * logits), labels) == pytest.approx(0.5, rel=0.08)  # underconfident


def test_ece_is_near_zero_when_calibrated_and_falls_after_scaling():
    logits, labels = _sampled()
    assert expected_calibration_error(_softmax(logits), labels) < 0.02
    overconfident = _softmax(3.0 * logits)
    before = expected_calibration_error(overconfident, labels)
    after = expected_calibration_error(apply_temperature(overconfident, fit_temperature(overconfident, labels)), labels)
    assert before > 0.1 and after < 0.02


def test_ece_by_hand():
    # two faces at confidence 0.9 (one right) and two at 0.6 (both right): bins 0.9 and 0.6, each half the faces
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = np.array([0, 1, 0, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6))


def test_mark_uncertain_keeps_the_probabilities():
    from inference.predictor import make_prediction

    pred = make_prediction((0, 0, 10, 10), np.array([0.5, 0.3, 0.2]), ["A", "B", "C"])
    assert mark_uncertain(pred, 0.4) is pred
    marked = mark_uncertain(pred, 0.6)
    assert marked.emotion == UNCERTAIN and marked.confidence == 0.5 and marked.probabilities == pred.probabilities
    assert model_temperature({}) == 1.0 and model_temperature({"calibration": {"temperature": 1.7}}) == 1.7


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("cal") / "tiny.keras")


def test_calibrate_cli_stores_the_temperature_and_the_predictor_applies_it(tiny_model, tmp_path, capsys):
    import calibrate
    from inference.predictor import FacePredictor
    from models.io import read_metadata

    data = write_converted(tmp_path / "data", class_names=CLASSES, hog=None, landmarks=False)
    out = tmp_path / "tiny_cal.keras"
    before = tiny_model.read_bytes()
    assert calibrate.main(["--model", str(tiny_model), "--data", str(data), "--out", str(out)]) == 0
    assert "temperature" in capsys.readouterr().out
    assert tiny_model.read_bytes() == before  # the input is never touched
    cal = read_metadata(out)["calibration"]
    assert cal["fitted_on"] == "PublicTest" and cal["n"] == 32 and cal["temperature"] > 0
    assert cal["nll_after"] <= cal["nll_before"] + 1e-6
    # the calibrated predictor's probabilities are the raw ones at that temperature; the argmax is unchanged
    faces = np.load(data / "PrivateTest" / "images.npy")[:8]
    raw = FacePredictor(tiny_model, assume_face=True).predict_faces(faces)
    calibrated = FacePredictor(out, assume_face=True).predict_faces(faces)
    np.testing.assert_allclose(calibrated, apply_temperature(raw, cal["temperature"]), atol=1e-5)
    # refusals: an existing --out, the input as --out, another class set
    assert calibrate.main(["--model", str(tiny_model), "--data", str(data), "--out", str(out)]) == 1
    assert "calibrate.py: error:" in (err := capsys.readouterr().err) and "exists" in err
    with pytest.raises(SystemExit) as exc:
        calibrate.main(["--model", str(tiny_model), "--data", str(data), "--out", str(tiny_model)])
    assert exc.value.code == 2
    other = write_converted(tmp_path / "other", hog=None, landmarks=False)
    assert calibrate.main(["--model", str(tiny_model), "--data", str(other), "--out", str(tmp_path / "x.keras")]) == 1
    assert "classes disagree" in capsys.readouterr().err and not (tmp_path / "x.keras").exists()


def test_predict_min_confidence_labels_uncertain_and_keeps_probabilities(tiny_model, tmp_path, capsys):
    import cv2

    import predict

    image = tmp_path / "face.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8))
    args = ["--image", str(image), "--model", str(tiny_model), "--assume-face", "--json"]
    assert predict.main(args) == 0
    plain = json.loads(capsys.readouterr().out)[0]
    assert predict.main([*args, "--min-confidence", "1.0"]) == 0
    marked = json.loads(capsys.readouterr().out)[0]
    assert plain["emotion"] in CLASSES and marked["emotion"] == UNCERTAIN
    assert marked["probabilities"] == plain["probabilities"] and marked["confidence"] == plain["confidence"]
    with pytest.raises(SystemExit) as exc:
        predict.main([*args, "--min-confidence", "1.5"])
    assert exc.value.code == 2 and "--min-confidence" in capsys.readouterr().err
