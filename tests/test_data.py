"""data/ package: csv loading and its errors, HOG parity with scikit-image, landmarks, features, reading back."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_rows, pixels_text, write_fer_csv

from data.features import FEATURE_PARTS, assemble_features, compute_feature_arrays, compute_features
from data.fer2013 import Fer2013FormatError, load_fer2013
from data.hog import (
    hog_features,
    hog_plain,
    hog_plain_reference,
    hog_windows,
    hog_windows_reference,
)
from data.landmarks import LandmarkExtractor, default_shape_predictor_path
from parameters import FEATURE_SETS

# ------------------------------------------------------------------------------------------- load_fer2013


@pytest.mark.parametrize("header", ["fer2013", "icml"])
@pytest.mark.parametrize("name", ["fer.csv", "fer.csv.gz"])
def test_load_both_headers_plain_and_gzip(tmp_path, synthetic_rows, header, name):
    path = write_fer_csv(tmp_path / name, synthetic_rows, header=header)
    data = load_fer2013(path)
    assert list(data.splits) == ["Training", "PublicTest", "PrivateTest"]
    assert data.skipped == []
    for usage, split in data.splits.items():
        expected = [(i, r) for i, r in enumerate(synthetic_rows) if r[2] == usage]
        assert split.images.shape == (len(expected), 48, 48) and split.images.dtype == np.uint8
        assert split.labels.dtype == np.int64
        assert split.labels.tolist() == [r[0] for _, r in expected]
        np.testing.assert_array_equal(split.images, np.stack([r[1] for _, r in expected]))
        assert split.lines.tolist() == [i + 2 for i, _ in expected]  # line 1 is the header
        assert split.rows.tolist() == [i for i, _ in expected]


def test_load_limit_and_missing_split(tmp_path, synthetic_rows):
    path = write_fer_csv(tmp_path / "fer.csv", synthetic_rows)
    data = load_fer2013(path, limit=5)
    assert list(data.splits) == ["Training"] and len(data.splits["Training"]) == 5


def test_many_rows_cross_batches(tmp_path):
    """More rows than one numpy parsing batch, with a bad row in the second batch skipped."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (2100, 48, 48), dtype=np.uint8)
    rows = [(i % 7, image, "Training") for i, image in enumerate(images)]
    rows[2050] = (0, "1 2 3", "Training")
    data = load_fer2013(write_fer_csv(tmp_path / "big.csv", rows), skip_bad_rows=True)
    keep = np.arange(2100) != 2050
    np.testing.assert_array_equal(data.splits["Training"].images, images[keep])
    assert [b.line for b in data.skipped] == [2052]


def _bad_cases():
    good = pixels_text(np.full((48, 48), 7, dtype=np.uint8))
    short = " ".join(["1"] * 2303)
    return {
        "wrong pixel count": ((0, short, "Training"), "expected 2304 pixel values, found 2303"),
        "non-integer pixel": ((0, good[:-1] + "x", "Training"), "not an integer"),
        "float pixel": ((0, "2.5 " + good[2:], "Training"), "not an integer"),
        "pixel over 255": ((0, "256 " + good[2:], "Training"), "out of range 0..255"),
        "negative pixel": ((0, "-1 " + good[2:], "Training"), "out of range 0..255"),
        "label 7": ((7, good, "Training"), "emotion 7 not in 0..6"),
        "label text": (("x", good, "Training"), "not an integer"),
        "unknown usage": ((0, good, "Validation"), "unknown Usage 'Validation'"),
    }


@pytest.mark.parametrize("kind", list(_bad_cases()))
def test_each_bad_row_kind_names_file_and_line(tmp_path, kind):
    bad_row, message = _bad_cases()[kind]
    rows = make_rows((1, 0, 0))
    rows.insert(3, bad_row)  # csv line 5
    path = write_fer_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(Fer2013FormatError, match=rf"{path}:5: .*{message}"):
        load_fer2013(path)
    data = load_fer2013(path, skip_bad_rows=True)
    assert [b.line for b in data.skipped] == [5] and message in data.skipped[0].reason
    assert len(data.splits["Training"]) == 7


def test_stray_text_lines(tmp_path):
    rows = make_rows((1, 0, 0))
    citation = "Challenges in Representation Learning: A report on three machine learning contests"
    path = write_fer_csv(tmp_path / "c.csv", rows, before=["FER2013, cite Goodfellow et al. 2013"],
                         after=["", citation])
    with pytest.raises(Fer2013FormatError, match=rf"{path}:1: text before the header"):
        load_fer2013(path)
    data = load_fer2013(path, skip_bad_rows=True)
    assert [b.line for b in data.skipped] == [1, 11]  # line 10 is blank: ignored
    assert "fields" in data.skipped[1].reason
    assert len(data.splits["Training"]) == 7


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("\n\n", "empty file"),
        ("emotion,pixels\n0,1 2 3\n", r":1: header .* lacks column\(s\) \['Usage'\]"),
        ("emotion,pixels,Usage\n", "no data rows"),
        ("0,1 2 3,Training\n", ":1: no header naming the columns"),
    ],
)
def test_file_level_errors(tmp_path, content, message):
    path = tmp_path / "f.csv"
    path.write_text(content)
    with pytest.raises(Fer2013FormatError, match=message) as info:
        load_fer2013(path, skip_bad_rows=True)
    assert str(path) in str(info.value)


def test_all_rows_bad_is_an_error_even_when_skipping(tmp_path):
    path = write_fer_csv(tmp_path / "f.csv", [(9, "1 2", "Training")])
    with pytest.raises(Fer2013FormatError, match="no valid data rows"):
        load_fer2013(path, skip_bad_rows=True)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_fer2013(tmp_path / "nope.csv")


# ------------------------------------------------------------------------------------------------ HOG


def _test_images(n_random: int = 40) -> np.ndarray:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n_random, 48, 48), dtype=np.uint8)
    ramp = np.tile((np.arange(48) * 5).astype(np.uint8), (48, 1))
    special = [np.zeros((48, 48), np.uint8), np.full((48, 48), 255, np.uint8), ramp, ramp.T, ramp[::-1, ::-1],
               (rng.integers(0, 2, (48, 48)) * 255).astype(np.uint8)]
    checker = np.indices((48, 48)).sum(0) % 2 * 255
    special.append(checker.astype(np.uint8))
    # smooth blobs: many gradients near bin boundaries and exactly on the axes
    y, x = np.mgrid[:48, :48]
    special.append((127 + 120 * np.sin(x / 5.0) * np.cos(y / 7.0)).astype(np.uint8))
    return np.concatenate([images, np.stack(special)])


def test_hog_windows_equal_per_window_skimage():
    images = _test_images()
    ours = hog_windows(images)
    assert ours.shape == (len(images), 2592) and ours.dtype == np.float32
    reference = np.stack([hog_windows_reference(image) for image in images])
    assert reference.shape == ours.shape
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)
    assert np.abs(ours).max() > 0.1  # not trivially zero


def test_hog_plain_equals_skimage():
    images = _test_images()
    ours = hog_plain(images)
    assert ours.shape == (len(images), 72) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, np.stack([hog_plain_reference(i) for i in images]), rtol=0, atol=1e-6)


def _hog_plain_skimage_0_12(image: np.ndarray) -> np.ndarray:
    """The plain HOG as scikit-image 0.12 (the 2016 repository's) computed it, written out from its source:
    central differences, orientation % 180 in 8 bins, per-cell mean magnitudes, block / sqrt(block.sum()**2 + 1e-5)."""
    image = image.astype(np.float64)
    gx = np.zeros_like(image)
    gy = np.zeros_like(image)
    gx[:, 1:-1] = image[:, 2:] - image[:, :-2]
    gy[1:-1, :] = image[2:, :] - image[:-2, :]
    magnitude = np.sqrt(gx**2 + gy**2)
    orientation = np.arctan2(gy, gx) * (180 / np.pi) % 180
    out = np.zeros((3, 3, 8))
    for i in range(8):
        inside = (orientation >= 22.5 * i) & (orientation < 22.5 * (i + 1))
        votes = np.where(inside, magnitude, 0.0)
        out[..., i] = votes.reshape(3, 16, 3, 16).mean(axis=(1, 3))
    return (out / np.sqrt(out.sum(axis=-1, keepdims=True) ** 2 + 1e-5)).ravel()


def test_hog_2016_l1_block_norm():
    images = _test_images()
    ours = hog_features(images, block_norm="L1-2016")
    expected = np.stack([_hog_plain_skimage_0_12(i) for i in images])
    np.testing.assert_allclose(ours["hog_plain"], expected, rtol=0, atol=1e-6)
    assert np.isfinite(ours["hog_windows"]).all() and ours["hog_windows"].shape == (len(images), 2592)
    # The window HOG with the 2016 norm is the L2-Hys one renormalised per cell: same zero cells, per-cell sums 1.
    cells = ours["hog_windows"].reshape(len(images), -1, 8).astype(np.float64)
    l2 = hog_windows(images).reshape(len(images), -1, 8)
    assert ((cells.sum(-1) > 0) == (l2.sum(-1) > 0)).all()
    busy = cells.sum(-1) > 0.5
    np.testing.assert_allclose(cells.sum(-1)[busy], 1.0, atol=1e-3)
    assert not np.allclose(cells, l2)
    with pytest.raises(ValueError, match="unknown block_norm 'L2'"):
        hog_features(images, block_norm="L2")


def test_hog_float_input_and_single_image():
    images = _test_images(5)
    np.testing.assert_allclose(hog_windows(images.astype(np.float64)), hog_windows(images), atol=1e-6)
    np.testing.assert_array_equal(hog_windows(images[0]), hog_windows(images[:1]))
    both = hog_features(images)
    np.testing.assert_array_equal(both["hog_plain"], hog_plain(images))
    with pytest.raises(ValueError, match=r"\(n, 48, 48\)"):
        hog_windows(np.zeros((2, 32, 32)))


def test_hog_parity_on_real_faces(fer_csv_gz):
    images = load_fer2013(fer_csv_gz, limit=1000).splits["Training"].images[::20]
    np.testing.assert_allclose(
        hog_windows(images), np.stack([hog_windows_reference(i) for i in images]), rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(hog_plain(images), np.stack([hog_plain_reference(i) for i in images]), atol=1e-6)


# ------------------------------------------------------------------------------------------ landmarks


@pytest.fixture(scope="module")
def extractor():
    return LandmarkExtractor()


def test_default_shape_predictor_is_found():
    path = default_shape_predictor_path()
    assert path.is_file() and path.name == "shape_predictor_68_face_landmarks.dat"


def test_bad_shape_predictor_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.dat"):
        LandmarkExtractor(tmp_path / "nope.dat")
    junk = tmp_path / "junk.dat"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="junk.dat"):
        LandmarkExtractor(junk)


def test_landmarks_shape_range_and_parallel_equals_serial(extractor):
    images = np.stack([r[1] for r in make_rows((3, 0, 0))] + list(_test_images(0)))
    serial = extractor.extract(images)
    assert serial.shape == (len(images), 68, 2) and serial.dtype == np.float32
    assert np.all(serial == np.round(serial))  # dlib gives integer pixel positions
    assert serial.min() >= -24 and serial.max() <= 72  # around the (1, 1, 47, 47) face box
    assert serial[:, :, 0].std() > 1 and serial[:, :, 1].std() > 1  # a spread-out shape, not a point
    parallel = extractor.extract(images, workers=2, progress=True)
    np.testing.assert_array_equal(parallel, serial)
    # the 68 points of one face follow dlib's convention: jaw (0-16) spans the width, below the eyes (36-47)
    one = extractor.extract(images[:1])[0]
    assert one[0:17, 0].max() - one[0:17, 0].min() > 20
    assert one[36:48, 1].mean() < one[8, 1]


def test_landmarks_on_real_faces(extractor, fer_csv_gz):
    images = load_fer2013(fer_csv_gz, limit=200).splits["Training"].images
    points = extractor.extract(images, workers=2)
    assert points.shape == (200, 68, 2)
    # on aligned faces the chin (8) is below the nose tip (30), which is below the eyes (36-47)
    assert np.mean(points[:, 8, 1] > points[:, 30, 1]) > 0.95
    assert np.mean(points[:, 30, 1] > points[:, 36:48, 1].mean(axis=1)) > 0.95
    assert 0 <= np.median(points) <= 48


# ------------------------------------------------------------------------------------------- features


def test_assemble_features_layout_and_dims():
    rng = np.random.default_rng(0)
    landmarks = rng.integers(0, 48, (3, 68, 2)).astype(np.float32)
    plain, windows = rng.random((3, 72)), rng.random((3, 2592))
    assert assemble_features("raw") is None
    for feature_set, dim in FEATURE_SETS.items():
        out = assemble_features(feature_set, landmarks=landmarks, hog_plain=plain, hog_windows=windows)
        if feature_set == "raw":
            assert out is None
            continue
        assert out.shape == (3, dim) and out.dtype == np.float32
        np.testing.assert_array_equal(out[:, :136], landmarks.reshape(3, -1))
        assert out[0, 0] == landmarks[0, 0, 0] and out[0, 1] == landmarks[0, 0, 1]  # x0, y0, x1, ...
    out = assemble_features("landmarks_hog_windows", landmarks=landmarks, hog_windows=windows)
    np.testing.assert_allclose(out[:, 136:], windows, rtol=1e-6)
    with pytest.raises(ValueError, match="needs hog_plain"):
        assemble_features("landmarks_hog", landmarks=landmarks)
    with pytest.raises(ValueError, match="unknown feature set"):
        assemble_features("pixels")
    assert set(FEATURE_PARTS) == set(FEATURE_SETS)


def test_compute_features_matches_stored_arrays(extractor):
    images = np.stack([r[1] for r in make_rows((1, 0, 0))])
    arrays = compute_feature_arrays(images, ["landmarks", "hog_plain", "hog_windows"], extractor=extractor)
    for feature_set in FEATURE_SETS:
        features = compute_features(images, feature_set, extractor=extractor)
        if feature_set == "raw":
            assert features is None
            continue
        parts = {k: arrays[k] for k in FEATURE_PARTS[feature_set]}
        np.testing.assert_array_equal(features, assemble_features(feature_set, **parts))
    # float faces (what a detector crop may give) are rounded to the same uint8 faces
    np.testing.assert_array_equal(
        compute_features(images.astype(np.float32), "landmarks_hog", extractor=extractor),
        compute_features(images, "landmarks_hog", extractor=extractor),
    )
