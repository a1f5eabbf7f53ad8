"""Finding and framing faces (inference.faces): detectors, the cascade, alignment, the shared crop and face flags."""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import pytest

from inference.faces import (
    DETECTORS,
    FER2013_ANCHORS,
    DetectedFace,
    FaceFinder,
    FacePipeline,
    add_face_arguments,
    align_face,
    align_fer2013_faces,
    anchor_points,
    crop_face,
    pipeline_from_args,
    similarity_transform,
)


@pytest.fixture(scope="module")
def astronaut_grey() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY)


@pytest.fixture(scope="module")
def landmark_finder() -> FaceFinder:
    return FaceFinder(FacePipeline(detector="dlib", align=True))


def eye_line_degrees(landmarks: np.ndarray) -> float:
    left, right, _ = anchor_points(landmarks)
    return float(np.degrees(np.arctan2(right[1] - left[1], right[0] - left[0])))


@pytest.mark.parametrize("detector", DETECTORS)
def test_every_detector_finds_the_astronaut(astronaut_grey, detector):
    faces = FaceFinder(FacePipeline(detector=detector, detect_size=320, cnn_size=320)).detect(astronaut_grey)
    assert len(faces) == 1, faces
    x, y, w, h = faces[0].box
    # Eileen Collins' face lies in the upper middle of the 512x512 photo.
    assert 150 <= x + w / 2 <= 260 and 60 <= y + h / 2 <= 160 and 50 <= w <= 170
    assert faces[0].detector in detector.split("+")


class FakeDetector:
    def __init__(self, boxes):
        self.boxes, self.calls = boxes, 0

    def __call__(self, grey):
        self.calls += 1
        return list(self.boxes)


def test_cascade_falls_back_only_when_the_first_finds_nothing():
    grey = np.zeros((200, 300), np.uint8)
    finder = FaceFinder(FacePipeline(detector="dlib+haar", detect_size=0))
    hog, haar = FakeDetector([]), FakeDetector([(10, 20, 50, 50)])
    finder._detectors = {"dlib": hog, "haar": haar}
    assert finder.detect(grey) == [DetectedFace((10, 20, 50, 50), "haar")]
    assert (hog.calls, haar.calls) == (1, 1)  # detect_size 0: HOG ran once at full size, then Haar
    hog.boxes = [(100, 20, 60, 60), (5, 5, 40, 40)]
    assert [f.box for f in finder.detect(grey)] == [(5, 5, 40, 40), (100, 20, 60, 60)]  # left to right
    assert haar.calls == 1  # not asked again: HOG found faces


def test_stages_detect_small_then_full_and_map_boxes_back():
    finder = FaceFinder(FacePipeline(detector="dlib", detect_size=100))
    seen = []
    finder._detectors = {"dlib": lambda g: seen.append(g.shape) or ([] if g.shape[1] == 100 else [(40, 40, 80, 80)])}
    assert finder.detect(np.zeros((200, 400), np.uint8)) == [DetectedFace((40, 40, 80, 80), "dlib")]
    assert seen == [(50, 100), (200, 400)]
    finder._detectors = {"dlib": lambda g: [(10, 10, 20, 20)]}  # found on the small copy: scaled back 4x
    assert finder.detect(np.zeros((200, 400), np.uint8))[0].box == (40, 40, 80, 80)


def test_similarity_transform_recovers_a_rotation_and_scale():
    angle, scale = np.radians(25), 1.7
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = np.array([[3.0, 4.0], [10.0, 2.0], [6.0, 12.0]])
    dst = src @ linear.T + [5.0, -3.0]
    np.testing.assert_allclose(similarity_transform(src, dst), np.hstack([linear, [[5.0], [-3.0]]]), atol=1e-9)


@pytest.mark.parametrize("angle", [-20, 15])
def test_a_rotated_face_comes_out_upright(astronaut_grey, landmark_finder, angle):
    face = landmark_finder.detect(astronaut_grey)[0]
    x, y, w, h = face.box
    centre = (x + w / 2, y + h / 2)
    rotated = cv2.warpAffine(astronaut_grey, cv2.getRotationMatrix2D(centre, angle, 1.0), astronaut_grey.shape[::-1],
                             borderMode=cv2.BORDER_REPLICATE)
    landmarks = landmark_finder.landmarks(rotated, face)  # the unrotated box still holds the face
    assert abs(abs(eye_line_degrees(landmarks)) - abs(angle)) < 4  # the input really is tilted
    aligned = align_face(rotated, landmarks, 192)
    after = landmark_finder.landmarks(aligned, DetectedFace((0, 0, 192, 192), "image"))
    assert abs(eye_line_degrees(after)) < 2.0
    # scale normalised: the eyes sit as far apart as on the mean FER2013 face (x4 for 192 px)
    left, right, mouth = anchor_points(after)
    assert np.linalg.norm(right - left) == pytest.approx(4 * (FER2013_ANCHORS[1, 0] - FER2013_ANCHORS[0, 0]), rel=0.15)


def test_inference_and_conversion_give_the_same_crop(astronaut_grey, landmark_finder):
    from data.landmarks import LandmarkExtractor
    from inference.predictor import FacePredictor

    face = landmark_finder.detect(astronaut_grey)[0]
    face48 = crop_face(astronaut_grey, face.box, 48, (1.06, 0.052))  # a FER2013-like face
    converted = align_fer2013_faces(face48[None], LandmarkExtractor())[0]

    class Identity:
        class_names, input_size = ("a", "b"), 48

        def __call__(self, faces):
            return np.full((len(faces), 2), 0.5, np.float32)

    predictor = FacePredictor(classifier=Identity(), pipeline=FacePipeline(assume_face=True, align=True))
    inferred = predictor.predict(face48)[0].face
    np.testing.assert_array_equal(inferred, converted)
    assert not np.array_equal(converted, face48)  # alignment did something


def test_big_faces_are_shrunk_without_aliasing(astronaut_grey, landmark_finder):
    face = landmark_finder.detect(astronaut_grey)[0]
    big = cv2.resize(astronaut_grey, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    small_crop = align_face(astronaut_grey, landmark_finder.landmarks(astronaut_grey, face), 48)
    box4 = tuple(4 * v for v in face.box)
    big_crop = align_face(big, landmark_finder.landmarks(big, DetectedFace(box4, "dlib")), 48)
    assert np.abs(small_crop.astype(int) - big_crop.astype(int)).mean() < 12


# ---------------------------------------------------------------------------------------------- flags


def test_the_clis_share_the_face_flags():
    import evaluate
    import predict
    import predict_from_video

    argv = ["--detector", "cnn", "--align", "--cnn-size", "300", "--detect-size", "640", "--upsample", "1"]
    expected = FacePipeline(detector="cnn", align=True, cnn_size=300, detect_size=640, upsample=1)
    assert pipeline_from_args(predict.parse_args(["--image", "x.jpg", *argv])) == expected
    assert pipeline_from_args(predict_from_video.parse_args(["--no-display", *argv])) == expected
    evaluate_args = evaluate.parse_args(["--model", "m.keras", "--images-dir", "d", *argv])
    assert pipeline_from_args(evaluate_args) == expected


def test_photo_and_video_defaults_come_from_face_pipeline():
    import evaluate
    import predict
    import predict_from_video

    assert pipeline_from_args(predict.parse_args(["--image", "x.jpg"])) == FacePipeline.for_photos()
    assert pipeline_from_args(predict_from_video.parse_args(["--no-display"])) == FacePipeline.for_video()
    evaluate_args = evaluate.parse_args(["--model", "m.keras", "--images-dir", "d"])
    assert pipeline_from_args(evaluate_args) == FacePipeline.for_photos()
    assert FacePipeline.for_video().detector == "dlib"  # the fast one: video keeps >= 60 fps


@pytest.mark.parametrize("argv", [["--detect-size", "-1"], ["--upsample", "x"], ["--detector", "mtcnn"]])
def test_bad_face_flags_are_usage_errors(argv, capsys):
    parser = argparse.ArgumentParser()
    add_face_arguments(parser, FacePipeline.for_photos())
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(argv)
    assert exit_info.value.code == 2
    assert argv[0] in capsys.readouterr().err


def test_assume_face_images_are_taken_as_framed_unless_align_is_given():
    parser = argparse.ArgumentParser()
    add_face_arguments(parser, FacePipeline(align=True))
    assert pipeline_from_args(parser.parse_args([])).align
    assert not pipeline_from_args(parser.parse_args(["--assume-face"])).align
    assert pipeline_from_args(parser.parse_args(["--assume-face", "--align"])).align
    assert not pipeline_from_args(parser.parse_args(["--no-align"])).align


def test_every_detector_choice_has_stages():
    from inference.faces import DETECTOR_STAGES
    from parameters import DETECTORS

    assert tuple(DETECTOR_STAGES) == DETECTORS
