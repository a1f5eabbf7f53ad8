"""convert_fer2013.py end to end (``main([...])``) and reading its output back with data.dataset."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import make_rows, write_fer_csv

import convert_fer2013
from data import convert as convert_module
from data.dataset import load_converted, read_meta
from data.features import compute_features
from data.hog import hog_plain, hog_windows, hog_windows_reference
from parameters import EMOTIONS, FEATURE_SETS

FAST = ["--no-landmarks", "--no-progress", "--workers", "1"]


def _csv_rows(path):
    """(emotion, usage) per data row, read independently with the csv module."""
    with open(path, newline="") as handle:
        return [(int(r["emotion"]), r["Usage"]) for r in csv.DictReader(handle)]


def _leftovers(parent, name):
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{name}.")]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Default options (landmarks, sliding-window HOG, one-hot) on a synthetic csv, with 2 workers."""
    tmp = tmp_path_factory.mktemp("converted")
    path = write_fer_csv(tmp / "fer2013.csv.gz", make_rows((2, 1, 1)))
    out = tmp / "out"
    assert convert_fer2013.main(["--csv", str(path), "--out", str(out), "--workers", "2", "--no-progress"]) == 0
    return path, out


def test_default_layout_and_meta(converted):
    path, out = converted
    meta = read_meta(out)
    assert meta["class_names"] == list(EMOTIONS) and meta["expressions"] == list(range(7))
    assert meta["hog"] == "windows" and meta["onehot"] is True
    assert meta["files"] == ["images", "labels", "landmarks", "hog_features", "hog_plain"]
    assert meta["counts"]["Training"] == dict.fromkeys(EMOTIONS, 2)
    assert meta["counts"]["PrivateTest"] == dict.fromkeys(EMOTIONS, 1)
    assert meta["skipped_rows"] == [] and len(meta["source_sha256"]) == 64
    assert {"numpy", "scikit-image", "dlib"} <= set(meta["versions"])
    assert meta["options"]["workers"] == 2 and meta["options"]["expressions"] is None
    sizes = {"Training": 14, "PublicTest": 7, "PrivateTest": 7}
    for split, n in sizes.items():
        folder = out / split
        images = np.load(folder / "images.npy")
        assert images.shape == (n, 48, 48) and images.dtype == np.uint8
        labels = np.load(folder / "labels.npy")
        assert labels.shape == (n, 7) and labels.dtype == np.float32 and np.all(labels.sum(1) == 1)
        assert np.load(folder / "landmarks.npy").shape == (n, 68, 2)
        hog = np.load(folder / "hog_features.npy")
        assert hog.shape == (n, 2592) and hog.dtype == np.float32
        np.testing.assert_allclose(hog[0], hog_windows_reference(images[0]), atol=1e-6)
        np.testing.assert_array_equal(np.load(folder / "hog_plain.npy"), hog_plain(images))
    assert not _leftovers(out.parent, "out")


def test_load_converted_every_feature_set(converted):
    path, out = converted
    rows = make_rows((2, 1, 1))
    for feature_set, dim in FEATURE_SETS.items():
        images, labels, features = load_converted(out, "PublicTest", feature_set)
        assert images.shape == (7, 48, 48) and labels.dtype == np.int64
        assert labels.tolist() == [r[0] for r in rows if r[2] == "PublicTest"]
        if feature_set == "raw":
            assert features is None
        else:
            assert features.shape == (7, dim) and features.dtype == np.float32
            # prediction computes the same vector from the raw face
            np.testing.assert_array_equal(compute_features(images, feature_set), features)


def test_load_converted_names_missing_files(converted, tmp_path):
    _, out = converted
    with pytest.raises(FileNotFoundError, match=r"Validation"):
        load_converted(out, "Validation", "raw")
    with pytest.raises(FileNotFoundError, match=r"meta\.json"):
        read_meta(tmp_path)
    with pytest.raises(ValueError, match="unknown feature set"):
        load_converted(out, "Training", "hog")


def test_no_hog_windows_no_onehot_and_missing_feature_arrays(synthetic_csv, tmp_path):
    out = tmp_path / "plain"
    assert convert_fer2013.main(["--csv", str(synthetic_csv), "--out", str(out), "--no-hog-windows",
                                 "--no-onehot", *FAST]) == 0
    meta = read_meta(out)
    assert meta["hog"] == "plain" and meta["onehot"] is False
    labels = np.load(out / "Training" / "labels.npy")
    assert labels.shape == (14,) and labels.dtype == np.int64
    assert np.load(out / "Training" / "hog_features.npy").shape == (14, 72)
    assert not (out / "Training" / "hog_plain.npy").exists()
    assert not (out / "Training" / "landmarks.npy").exists()
    with pytest.raises(FileNotFoundError, match=r"landmarks\.npy is missing .*--landmarks"):
        load_converted(out, "Training", "landmarks_hog")
    np.save(out / "Training" / "landmarks.npy", np.zeros((14, 68, 2), np.float32))
    _, _, features = load_converted(out, "Training", "landmarks_hog")  # plain HOG from hog_features.npy
    np.testing.assert_array_equal(features[:, 136:], np.load(out / "Training" / "hog_features.npy"))
    with pytest.raises(FileNotFoundError, match=r"hog_features\.npy holds 'plain' HOG"):
        load_converted(out, "Training", "landmarks_hog_windows")
    images, labels, features = load_converted(out, "Training", "raw")
    assert features is None and labels.tolist() == [r % 7 for r in range(14)]


def test_expressions_relabelled_against_csv(synthetic_csv, tmp_path):
    out = tmp_path / "five"
    argv = ["--csv", str(synthetic_csv), "--out", str(out), "--expressions", "6,0,3", "--no-hog", *FAST]
    assert convert_fer2013.main(argv) == 0
    meta = read_meta(out)
    assert meta["class_names"] == ["Neutral", "Angry", "Happy"]
    assert meta["expression_mapping"] == {"6": 0, "0": 1, "3": 2}
    assert meta["files"] == ["images", "labels"]
    rows = _csv_rows(synthetic_csv)
    mapping = {6: 0, 0: 1, 3: 2}
    all_images = {u: np.stack([r[1] for r in make_rows() if r[2] == u]) for u in ("Training", "PublicTest")}
    for usage in ("Training", "PublicTest", "PrivateTest"):
        expected = [mapping[e] for e, u in rows if u == usage and e in mapping]
        images, labels, _ = load_converted(out, usage, "raw")
        assert labels.tolist() == expected
        assert meta["counts"][usage] == {name: expected.count(i) for i, name in enumerate(meta["class_names"])}
    # the kept images are the csv's faces of those classes, in file order
    keep = [i for i, (e, u) in enumerate(r for r in rows if r[1] == "Training") if e in mapping]
    np.testing.assert_array_equal(load_converted(out, "Training", "raw")[0], all_images["Training"][keep])


def test_images_per_label_cap(synthetic_csv, tmp_path):
    out = tmp_path / "capped"
    argv = ["--csv", str(synthetic_csv), "--out", str(out), "--images-per-label", "1", "--no-hog", *FAST]
    assert convert_fer2013.main(argv) == 0
    counts = read_meta(out)["counts"]
    assert counts["Training"] == dict.fromkeys(EMOTIONS, 1)  # 2 per class in the csv
    _, labels, _ = load_converted(out, "Training", "raw")
    assert labels.tolist() == list(range(7))  # the first face of each class


def test_jpg_hog_images_limit(synthetic_csv, tmp_path):
    out = tmp_path / "jpg"
    argv = ["--csv", str(synthetic_csv), "--out", str(out), "--jpg", "--hog-images", "--limit", "9", *FAST]
    assert convert_fer2013.main(argv) == 0
    assert sum(read_meta(out)["counts"]["Training"].values()) == 9
    assert np.load(out / "Training" / "hog_images.npy").shape == (9, 48, 48)
    names = sorted(p.name for p in (out / "Training" / "jpg").iterdir())
    assert len(names) == 9 and "0_Angry.jpg" in names and "8_Disgust.jpg" in names


def test_bad_csv_fails_cleanly(tmp_path, capsys):
    rows = make_rows((1, 0, 0))
    rows.insert(2, (0, "1 2 3", "Training"))  # csv line 4
    path = write_fer_csv(tmp_path / "bad.csv", rows)
    out = tmp_path / "out"
    assert convert_fer2013.main(["--csv", str(path), "--out", str(out), *FAST]) == 1
    err = capsys.readouterr().err
    assert f"{path}:4:" in err and "2304 pixel values" in err and "--skip-bad-rows" in err
    assert not out.exists() and not _leftovers(tmp_path, "out")
    assert convert_fer2013.main(["--csv", str(path), "--out", str(out), "--skip-bad-rows", "--no-hog", *FAST]) == 0
    skipped = json.loads((out / "meta.json").read_text())["skipped_rows"]
    assert [s["line"] for s in skipped] == [4] and "2304" in skipped[0]["reason"]


def test_failure_mid_write_leaves_no_dir_and_keeps_old_one(synthetic_csv, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    calls = []
    real_save = np.save

    def failing_save(path, array):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        real_save(path, array)

    monkeypatch.setattr(convert_module.np, "save", failing_save)
    assert convert_fer2013.main(["--csv", str(synthetic_csv), "--out", str(out), *FAST]) == 1  # one line, no trace
    assert "writing failed (disk full)" in capsys.readouterr().err
    assert not out.exists() and not _leftovers(tmp_path, "out")
    assert len(calls) == 3  # it did start writing

    monkeypatch.undo()
    assert convert_fer2013.main(["--csv", str(synthetic_csv), "--out", str(out), "--no-hog", *FAST]) == 0
    before = sorted(p.name for p in (out / "Training").iterdir())
    monkeypatch.setattr(convert_module.np, "save", failing_save)
    calls.clear()
    assert convert_fer2013.main(["--csv", str(synthetic_csv), "--out", str(out), "--overwrite", *FAST]) == 1
    assert sorted(p.name for p in (out / "Training").iterdir()) == before  # old output intact
    assert not _leftovers(tmp_path, "out")


def test_overwrite_replaces(synthetic_csv, tmp_path):
    out = tmp_path / "out"
    assert convert_fer2013.main(["--csv", str(synthetic_csv), "--out", str(out), "--no-hog", *FAST]) == 0
    assert convert_fer2013.main(["--csv", str(synthetic_csv), "--out", str(out), "--overwrite", "--limit", "3",
                                 "--no-hog", *FAST]) == 0
    assert sum(read_meta(out)["counts"]["Training"].values()) == 3
    assert not _leftovers(tmp_path, "out")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--expressions", "0,9"], "not in 0..6"),
        (["--expressions", "0,0"], "repeated"),
        (["--expressions", "a,b"], "comma-separated"),
        (["--limit", "0"], "positive integer"),
        (["--shape-predictor", "/nonexistent.dat"], "no such file"),
    ],
)
def test_bad_flags(synthetic_csv, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as info:
        convert_fer2013.main(["--csv", str(synthetic_csv), "--out", str(tmp_path / "o"), *extra])
    assert info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_existing_out_and_missing_csv(synthetic_csv, tmp_path, capsys):
    (tmp_path / "o").mkdir()
    with pytest.raises(SystemExit):
        convert_fer2013.main(["--csv", str(synthetic_csv), "--out", str(tmp_path / "o")])
    assert "--overwrite" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        convert_fer2013.main(["--csv", str(tmp_path / "none.csv"), "--out", str(tmp_path / "p")])
    assert "no such file" in capsys.readouterr().err


def test_real_data_first_1000_rows(fer_csv_gz, tmp_path):
    out = tmp_path / "real"
    argv = ["--csv", str(fer_csv_gz), "--out", str(out), "--limit", "1000", "--workers", "2", "--no-progress",
            "--expressions", "0,3,4,5,6"]
    assert convert_fer2013.main(argv) == 0
    meta = read_meta(out)
    assert list(meta["counts"]) == ["Training"]
    images, labels, features = load_converted(out, "Training", "landmarks_hog_windows")
    # relabelling checked against the csv's own first 1000 rows
    import gzip

    with gzip.open(fer_csv_gz, "rt", newline="") as handle:
        reader = csv.DictReader(handle)
        emotions = [int(next(reader)["emotion"]) for _ in range(1000)]
    mapping = {0: 0, 3: 1, 4: 2, 5: 3, 6: 4}
    assert labels.tolist() == [mapping[e] for e in emotions if e in mapping]
    assert features.shape == (len(labels), 136 + 2592)
    landmarks = features[:, :136].reshape(-1, 68, 2)
    assert np.median(landmarks[:, 8, 1] - landmarks[:, 30, 1]) > 5  # chin below nose tip
    np.testing.assert_allclose(features[::50, 136:], hog_windows(images[::50]), atol=0)
    np.testing.assert_allclose(
        features[:5, 136:], np.stack([hog_windows_reference(i) for i in images[:5]]), atol=1e-6
    )
