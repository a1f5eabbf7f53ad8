"""Face pipeline (inference.predictor) and predict.py, with a tiny untrained model built on the fly.

Weights do not matter here: the tests check detection, cropping, the model's input contract, batching, the output
format and the CLI's exit codes.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import predict
from inference.classifiers import ModelNotFoundError
from inference.faces import crop_face
from inference.images import ImageReadError, iter_image_files, load_image, to_grey
from inference.predictor import FacePredictor

CLASSES = ["Angry", "Happy", "Sad", "Surprise", "Neutral"]


def save_tiny_model(path: Path, feature_set: str = "raw", feature_dim: int = 0) -> Path:
    """A small Keras CNN with the documented input contract, saved with metadata by models.io."""
    import keras
    from keras import layers

    from models.io import save_model

    keras.utils.set_random_seed(0)
    image = keras.Input((48, 48, 1), name="image")
    x = layers.Rescaling(1 / 255)(image)
    x = layers.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    inputs = [image]
    if feature_dim:
        features = keras.Input((feature_dim,), name="features")
        norm = layers.Normalization(name="feature_norm", mean=0.0, variance=1.0)(features)
        x = layers.Concatenate()([x, layers.Dense(4)(norm)])
        inputs.append(features)
    out = layers.Dense(len(CLASSES), activation="softmax")(x)
    model = keras.Model(inputs if feature_dim else image, out)
    metadata = {
        "model_name": "tiny",
        "class_names": CLASSES,
        "expressions": [0, 3, 4, 5, 6],
        "feature_set": feature_set,
        "feature_dim": feature_dim,
        "input_size": [48, 48],
        "normalisation": "grey levels 0..255, rescaled inside the model",
    }
    return save_model(model, path, metadata)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.keras")


@pytest.fixture(scope="module")
def predictor(model_path) -> FacePredictor:
    return FacePredictor(model_path)


@pytest.fixture(scope="module")
def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory, astronaut_bgr) -> Path:
    path = tmp_path_factory.mktemp("images") / "astronaut.png"
    cv2.imwrite(str(path), astronaut_bgr)
    return path


# ---------------------------------------------------------------------------------------------- library


def check_astronaut(faces, shape):
    assert len(faces) == 1, faces
    x, y, w, h = faces[0].box
    assert x >= 0 and y >= 0 and x + w <= shape[1] and y + h <= shape[0]
    # Eileen Collins' face lies in the upper middle of the 512x512 photo.
    assert 150 <= x + w / 2 <= 260 and 60 <= y + h / 2 <= 160 and 60 <= w <= 160
    assert sum(faces[0].probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert list(faces[0].probabilities) == CLASSES
    assert faces[0].emotion in CLASSES
    assert faces[0].confidence == max(faces[0].probabilities.values())


@pytest.mark.parametrize("detector", ["dlib", "haar"])
def test_astronaut_one_face(model_path, astronaut_bgr, detector):
    faces = FacePredictor(model_path, detector=detector).predict(astronaut_bgr)
    check_astronaut(faces, astronaut_bgr.shape)
    assert faces[0].face.shape == (48, 48) and faces[0].face.dtype == np.uint8


@pytest.mark.parametrize(
    "convert",
    [
        lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY),  # grey
        lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY)[..., None],  # (h, w, 1)
        lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2BGRA),  # BGRA
        lambda im: im.astype(np.uint16) * 257,  # 16-bit
        lambda im: im.astype(np.float32) / 255,  # float 0..1
        lambda im: cv2.resize(im, (1600, 1600)),  # large: detected on a downscaled copy, boxes mapped back
    ],
    ids=["grey", "grey1", "bgra", "uint16", "float", "large"],
)
def test_image_formats_give_the_same_face(predictor, astronaut_bgr, convert):
    reference = predictor.predict(astronaut_bgr)[0]
    image = convert(astronaut_bgr)
    faces = predictor.predict(image)
    assert len(faces) == 1
    scale = image.shape[0] / astronaut_bgr.shape[0]
    np.testing.assert_allclose(np.array(faces[0].box) / scale, reference.box, atol=12)
    p, q = (np.array(list(f.probabilities.values())) for f in (faces[0], reference))
    np.testing.assert_allclose(p, q, atol=0.05)


def test_batch_matches_single_calls(predictor, astronaut_bgr):
    """Two faces side by side: one model call for all, same probabilities as each face's crop alone."""
    pair = np.concatenate([astronaut_bgr, cv2.flip(astronaut_bgr, 1)], axis=1)
    calls = []
    original = predictor.classifier.backend._call
    predictor.classifier.backend._call = lambda x: calls.append(len(x)) or original(x)
    try:
        faces = predictor.predict(pair)
    finally:
        predictor.classifier.backend._call = original
    assert len(faces) >= 2 and calls == [len(faces)]
    assert [f.box[0] for f in faces] == sorted(f.box[0] for f in faces)
    for face in faces:
        alone = predictor.predict_faces(face.face[None])[0]
        np.testing.assert_allclose(list(face.probabilities.values()), alone, atol=1e-4)


def test_blank_image_has_no_face(predictor):
    assert predictor.predict(np.full((300, 400, 3), 128, np.uint8)) == []


def test_assume_face_uses_whole_image(model_path):
    face = np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8)
    faces = FacePredictor(model_path, assume_face=True).predict(face)
    assert len(faces) == 1 and faces[0].box == (0, 0, 48, 48)
    np.testing.assert_array_equal(faces[0].face, face)


def test_crop_face_frames_and_pads():
    grey = np.arange(100 * 100, dtype=np.uint32).reshape(100, 100).astype(np.uint8)
    # Box flush with the image: the crop is the image itself when framing adds nothing.
    np.testing.assert_array_equal(crop_face(grey, (0, 0, 100, 100), 100), grey)
    # A box past the corner still gives a full-size crop (border replicated).
    crop = crop_face(grey, (80, 80, 40, 40), 48, (1.2, 0.05))
    assert crop.shape == (48, 48) and crop.dtype == np.uint8
    # Framing shifts the crop up: the dlib framing shows more above the box than below.
    ramp = np.repeat(np.arange(200, dtype=np.uint8)[:, None], 200, axis=1)
    assert (
        crop_face(ramp, (50, 50, 100, 100), 48, (1.06, 0.052)).mean() < crop_face(ramp, (50, 50, 100, 100), 48).mean()
    )


def test_to_grey_rejects_bad_shapes():
    with pytest.raises(ValueError, match="shape"):
        to_grey(np.zeros((10, 10, 2), np.uint8))
    assert to_grey(np.full((4, 4), 65535, np.uint16)).max() == 255


def test_load_image_errors_name_the_file(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    with pytest.raises(ImageReadError, match="notes.txt"):
        load_image(text)
    with pytest.raises(ImageReadError, match="no such file"):
        load_image(tmp_path / "missing.png")


def test_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    import inference.classifiers

    with pytest.raises(ModelNotFoundError, match="does not exist"):
        FacePredictor(tmp_path / "nope.keras")
    monkeypatch.setattr(inference.classifiers, "DEFAULT_MODEL_PATH", tmp_path / "no_bundle.keras")
    with pytest.raises(ModelNotFoundError, match="no --model given and no bundled model at"):
        FacePredictor()


def test_directory_walk(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "sub/a.JPG", "readme.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in iter_image_files([tmp_path])] == ["b.png", "a.JPG"]


def test_landmark_features_reach_the_model(tmp_path, astronaut_bgr):
    """A model trained with landmarks gets them computed from the crop (data.features.compute_features)."""
    path = save_tiny_model(tmp_path / "lm.keras", feature_set="landmarks", feature_dim=136)
    predictor = FacePredictor(path)
    seen = []
    original = predictor.classifier.backend._call
    predictor.classifier.backend._call = lambda x: seen.append(x) or original(x)
    faces = predictor.predict(astronaut_bgr)
    assert len(faces) == 1
    images, features = seen[0]
    assert images.shape == (1, 48, 48, 1) and features.shape == (1, 136)
    # Landmarks are (x, y) pixel coordinates inside the 48x48 crop.
    assert features.min() >= 0 and features.max() <= 48


# -------------------------------------------------------------------------------------------------- CLI


def test_cli_one_line_per_face(model_path, astronaut_png, capsys):
    assert predict.main(["--image", str(astronaut_png), "--model", str(model_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and "astronaut.png" in lines[0] and "box=(" in lines[0]
    assert any(name in lines[0] for name in CLASSES)


def test_cli_json_output_and_plot(model_path, astronaut_png, tmp_path, capsys):
    out, plot = tmp_path / "annotated.png", tmp_path / "bars.png"
    argv = ["--image", str(astronaut_png), "--model", str(model_path), "--json", "--output", str(out)]
    assert predict.main([*argv, "--plot", str(plot)]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 1
    assert set(records[0]) == {"image", "box", "emotion", "confidence", "probabilities"}
    assert records[0]["image"] == str(astronaut_png) and len(records[0]["box"]) == 4
    assert sum(records[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    annotated = cv2.imread(str(out))
    assert annotated.shape == (512, 512, 3)
    assert not np.array_equal(annotated, cv2.imread(str(astronaut_png)))  # something was drawn
    assert cv2.imread(str(plot)) is not None


def test_cli_blank_image_exits_3(model_path, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200), 255, np.uint8))
    assert predict.main(["--image", str(blank), "--model", str(model_path)]) == 3  # errors.EXIT_NO_FACE
    assert "blank.png: no face found" in capsys.readouterr().err


def test_cli_text_file_is_an_error_and_others_still_run(model_path, astronaut_png, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert predict.main(["--image", str(text), str(astronaut_png), "--model", str(model_path)]) == 1
    captured = capsys.readouterr()
    assert "notes.txt" in captured.err and "error" in captured.err
    assert "astronaut.png" in captured.out  # the good file was still processed


def test_cli_without_model_or_bundle(astronaut_png, tmp_path, capsys, monkeypatch):
    import inference.classifiers

    missing = tmp_path / "pretrained" / "fer_model.keras"  # a checkout without the bundled model
    monkeypatch.setattr(inference.classifiers, "DEFAULT_MODEL_PATH", missing)
    assert predict.main(["--image", str(astronaut_png)]) == 1
    err = capsys.readouterr().err
    assert "no --model given and no bundled model at" in err and str(missing) in err
