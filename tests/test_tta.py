"""Ten-crop test-time augmentation: the ten views, their average in evaluate(), and evaluate.py --tta ten-crop."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from data.augment import ten_crop_views
from inference.evaluation import EvaluationError, evaluate


def test_ten_crop_views_are_five_resized_crops_and_their_mirrors():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 48, 48), dtype=np.uint8)
    views = ten_crop_views(images)
    assert len(views) == 10 and all(v.shape == images.shape and v.dtype == np.uint8 for v in views)
    corners = [(0, 0), (0, 2), (2, 0), (2, 2), (1, 1)]
    for view, (top, left) in zip(views[:5], corners, strict=True):
        expected = cv2.resize(images[1, top:top + 46, left:left + 46], (48, 48), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(view[1], expected)
    for view, mirror in zip(views[:5], views[5:], strict=True):
        np.testing.assert_array_equal(mirror, view[:, :, ::-1])
    assert len({v.tobytes() for v in views}) == 10  # ten different views of a noise face
    assert [v.shape for v in ten_crop_views(images[:0])] == [(0, 48, 48)] * 10
    with pytest.raises(ValueError, match="crop 50"):
        ten_crop_views(images, crop=50)


class Scripted:
    """Stands in for a model: call i returns (1, 0) for every face when i is in ``x_calls``, else (0, 1); keeps the
    images it was given."""

    def __init__(self, x_calls=()):
        self.calls = []
        self.x_calls = set(x_calls)

    def predict(self, inputs, batch_size=None, verbose=0):
        self.calls.append(np.asarray(inputs[0] if isinstance(inputs, list) else inputs))
        p = float(len(self.calls) - 1 in self.x_calls)
        return np.tile([p, 1 - p], (len(self.calls[-1]), 1))


def test_evaluate_ten_crop_averages_the_ten_views():
    images = np.random.default_rng(1).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    model = Scripted(x_calls=range(4, 10))  # the first four views say y, the last six x: the mean (0.6, 0.4) says x
    meta = {"class_names": ["x", "y"], "feature_set": "raw"}
    result = evaluate(model, meta, images, np.array([0, 0, 1, 1]), None, tta="ten-crop")
    assert len(model.calls) == 10  # the ten views, no plain pass
    views = ten_crop_views(images)
    for call, view in zip(model.calls, views, strict=True):
        np.testing.assert_array_equal(call.reshape(view.shape), view)
    assert result["tta_mode"] == "ten-crop" and result["tta"] is True
    assert result["confusion_matrix"] == [[2, 0], [2, 0]] and result["accuracy"] == 0.5


def test_ten_crop_refuses_feature_models_and_unknown_modes():
    images = np.zeros((2, 48, 48), np.uint8)
    meta = {"class_names": ["x", "y"], "feature_set": "landmarks"}
    with pytest.raises(EvaluationError, match="ten-crop TTA needs a model on raw faces.*'landmarks'"):
        evaluate(Scripted(), meta, images, np.array([0, 1]), np.zeros((2, 136), np.float32), tta="ten-crop")
    with pytest.raises(EvaluationError, match="TTA 'five-crop'"):
        evaluate(Scripted(), {"class_names": ["x", "y"]}, images, np.array([0, 1]), None, tta="five-crop")


def test_evaluate_cli_tta_modes(capsys, tmp_path):
    import evaluate as cli

    base = ["--model", str(tmp_path / "m.keras"), "--data", str(tmp_path)]
    assert cli.parse_args(base).tta is None
    assert cli.parse_args([*base, "--tta"]).tta == "flip"
    assert cli.parse_args([*base, "--tta", "ten-crop"]).tta == "ten-crop"
    with pytest.raises(SystemExit) as exit_info:
        cli.parse_args([*base, "--tta", "five-crop"])
    assert exit_info.value.code == 2 and "--tta: invalid choice: 'five-crop'" in capsys.readouterr().err


class Recorder:
    """A FaceClassifier that records the faces it is given and scores each face by its left half's mean."""

    class_names = ("left", "right")
    input_size = 48

    def __init__(self):
        self.calls: list[np.ndarray] = []

    def __call__(self, faces):
        self.calls.append(faces.copy())
        left = faces[:, :, :24].mean(axis=(1, 2)) / 255.0
        return np.stack([left, 1 - left], axis=1).astype(np.float32)


def test_tta_classifier_averages_the_views_in_one_call():
    from inference.classifiers import PredictorError, TTAClassifier, with_tta

    faces = np.zeros((3, 48, 48), np.uint8)
    faces[:, :, :24] = 255  # bright left half: the plain view says "left" with 1.0, its mirror "right" with 1.0
    recorder = Recorder()
    assert with_tta(recorder, "none") is recorder and with_tta(recorder, None) is recorder
    flip = with_tta(recorder, "flip")
    probabilities = flip(faces)
    assert len(recorder.calls) == 1 and recorder.calls[0].shape == (6, 48, 48)  # faces then mirrors, one call
    np.testing.assert_allclose(probabilities, 0.5)
    assert flip.class_names == recorder.class_names and flip.input_size == 48
    ten = TTAClassifier(recorder, "ten-crop")
    probabilities = ten(faces)
    assert recorder.calls[-1].shape == (30, 48, 48)
    expected = np.mean([Recorder()(view) for view in ten_crop_views(faces)], axis=0)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-6)
    assert ten(np.zeros((0, 48, 48), np.uint8)).shape == (0, 2)
    with pytest.raises(PredictorError, match="TTA 'five-crop'"):
        TTAClassifier(recorder, "five-crop")


def test_predict_cli_tta_reaches_the_predictor(tmp_path, capsys):
    import predict
    from tests.conftest import save_tiny_model

    model = save_tiny_model(tmp_path / "m.keras", ["a", "b"])
    photo = tmp_path / "face.png"
    cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8))
    outputs = {}
    for mode in ("none", "flip", "ten-crop"):
        assert predict.main(["--image", str(photo), "--model", str(model), "--assume-face", "--tta", mode, "--json",
                             "--backend", "keras"]) == 0
        outputs[mode] = capsys.readouterr().out
    assert outputs["none"] != outputs["flip"] != outputs["ten-crop"]
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--image", str(photo), "--tta", "five-crop"])
    assert exit_info.value.code == 2
