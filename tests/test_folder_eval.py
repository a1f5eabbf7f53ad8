"""evaluate.py --images-dir: class folders matched with synonyms, the face pipeline, no-face errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.folder_eval import FolderEvalError, evaluate_folder, folder_aliases, match_folders
from inference.predictor import FacePredictor
from tests.test_predict import CLASSES, save_tiny_model

FERPLUS = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral", "Contempt"]


class Always:
    """A FaceClassifier stub that puts all probability on one class."""

    input_size = 48

    def __init__(self, class_names, winner):
        self.class_names = tuple(class_names)
        self.winner = self.class_names.index(winner)

    def __call__(self, faces):
        out = np.zeros((len(faces), len(self.class_names)), np.float32)
        out[:, self.winner] = 1.0
        return out


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """HAPPY/ (astronaut, blank) and sad/ (astronaut) plus a non-image file, which is ignored."""
    from skimage.data import astronaut

    root = tmp_path_factory.mktemp("photos")
    face = cv2.cvtColor(astronaut(), cv2.COLOR_RGB2BGR)
    (root / "HAPPY").mkdir()
    (root / "sad").mkdir()
    cv2.imwrite(str(root / "HAPPY" / "astronaut.jpg"), face)
    cv2.imwrite(str(root / "HAPPY" / "blank.png"), np.full((200, 200), 128, np.uint8))
    cv2.imwrite(str(root / "sad" / "astronaut.png"), face)
    (root / "sad" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "model.keras")


def test_synonyms_and_case():
    aliases = folder_aliases(FERPLUS)
    for folder, cls in [("anger", "Angry"), ("happiness", "Happy"), ("sadness", "Sad"), ("disgusted", "Disgust"),
                        ("fearful", "Fear"), ("surprised", "Surprise"), ("neutral", "Neutral"),
                        ("contempt", "Contempt"), ("angry", "Angry")]:
        assert FERPLUS[aliases[folder]] == cls
    assert "contempt" not in folder_aliases(CLASSES)  # a 5-class model has no contempt folder


def test_unmatched_folders_are_listed(tmp_path):
    for name in ("Happiness", "cats", "Dogs", ".hidden"):
        (tmp_path / name).mkdir()
    with pytest.raises(FolderEvalError, match=r"\['Dogs', 'cats'\] match none of the model's classes"):
        match_folders(tmp_path, CLASSES)
    with pytest.raises(FolderEvalError, match="no class subfolders"):
        match_folders(tmp_path / "Happiness", CLASSES)


def test_metrics_with_a_stub_classifier(photos):
    predictor = FacePredictor(classifier=Always(CLASSES, "Happy"))
    metrics, results = evaluate_folder(predictor, photos)
    assert metrics["n_images"] == 3 and metrics["n_no_face"] == 1
    assert [Path(p).name for p in metrics["no_face"]] == ["blank.png"]
    assert metrics["accuracy"] == pytest.approx(1 / 3)  # happy astronaut right; blank and sad astronaut wrong
    assert metrics["accuracy_on_faces"] == pytest.approx(1 / 2)
    happy, sad, k = CLASSES.index("Happy"), CLASSES.index("Sad"), len(CLASSES)
    matrix = np.asarray(metrics["confusion_matrix"])
    assert matrix.shape == (k, k + 1) and matrix.sum() == 3
    assert matrix[happy, happy] == 1 and matrix[happy, k] == 1 and matrix[sad, happy] == 1
    assert metrics["per_class"]["Happy"] == {"recall": 0.5, "precision": 0.5, "support": 2, "no_face": 1}
    assert metrics["per_class"]["Sad"]["recall"] == 0.0 and metrics["per_class"]["Angry"]["recall"] is None
    assert metrics["folders"] == {"HAPPY": "Happy", "sad": "Sad"}
    # --assume-face: the blank image is a "face" too
    metrics, _ = evaluate_folder(FacePredictor(classifier=Always(CLASSES, "Sad"), assume_face=True), photos)
    assert metrics["n_no_face"] == 0 and metrics["accuracy"] == pytest.approx(1 / 3)


def test_cli_writes_metrics_and_confusion_matrix(model_path, photos, tmp_path, capsys):
    import evaluate

    out = tmp_path / "eval"
    code = evaluate.main(["--model", str(model_path), "--images-dir", str(photos),
                       "--out", str(out), "--verbose", "0"])
    assert code == 0
    metrics = json.loads((out / "folder_metrics.json").read_text())
    from inference.faces import FacePipeline

    photo_defaults = FacePipeline.for_photos()  # predict.py's pipeline, also for folder evaluation
    assert metrics["n_images"] == 3 and metrics["n_no_face"] == 1 and metrics["detector"] == photo_defaults.detector
    assert metrics["pipeline"]["detect_size"] == photo_defaults.detect_size
    # the two astronauts get the same prediction from the same pipeline, so exactly one of them can be right
    assert metrics["accuracy"] in (0.0, 1 / 3)
    saved = json.loads((out / "folder_confusion_matrix.json").read_text())
    assert saved["column_names"][-1] == "no face" and np.asarray(saved["matrix"]).sum() == 3
    assert (out / "folder_confusion_matrix.png").stat().st_size > 1000
    assert "without a face" in capsys.readouterr().out
    (photos / "cats").mkdir()
    try:
        code = evaluate.main(["--model", str(model_path), "--images-dir", str(photos),
                              "--out", str(out), "--verbose", "0"])
    finally:
        (photos / "cats").rmdir()
    assert code == 1
    assert "['cats'] match none of the model's classes" in capsys.readouterr().err


def test_cli_needs_model_and_no_data(photos, capsys):
    import evaluate

    with pytest.raises(SystemExit):
        evaluate.main(["--images-dir", str(photos)])
    assert "--model" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # scoring a saved model is evaluate.py's job, not train.py's
        evaluate.main(["--model", "m.keras", "--images-dir", str(photos), "--split", "PrivateTest"])
    assert "--split goes with --data" in capsys.readouterr().err
