"""FER+ labels: fer2013new.csv parsing, majority vote, drops, soft labels, alignment errors, train.py --soft-labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data.convert import ConvertError, ConvertOptions, convert
from data.ferplus import FERPLUS_CLASSES, HEADER, FerPlusFormatError, majority_labels, read_ferplus
from parameters import EMOTIONS
from tests.conftest import make_rows, write_fer_csv

# FER+ column order: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
VOTES = [
    ([0, 8, 1, 0, 1, 0, 0, 0, 0, 0], "Happy"),
    ([6, 0, 0, 2, 0, 0, 0, 0, 2, 0], "Neutral"),
    ([0, 0, 0, 0, 0, 0, 0, 5, 3, 2], "Contempt"),
    ([4, 4, 0, 0, 0, 0, 0, 0, 2, 0], "tie"),
    ([1, 0, 0, 0, 0, 0, 0, 0, 0, 9], "unknown_or_nf"),  # not a face
    ([2, 0, 0, 0, 0, 0, 0, 0, 6, 2], "unknown_or_nf"),
    ([0, 0, 0, 0, 5, 0, 0, 0, 5, 0], "unknown_or_nf"),  # anger tied with unknown: no clear emotion
    ([0] * 10, "no_votes"),
    ([0, 0, 0, 0, 7, 1, 0, 0, 2, 0], "Angry"),
    ([0, 0, 9, 0, 0, 0, 0, 0, 1, 0], "Surprise"),
    ([0, 0, 0, 6, 0, 0, 3, 0, 1, 0], "Sad"),
    ([0, 0, 0, 0, 0, 0, 10, 0, 0, 0], "Fear"),
]
EXPECTED = [e for _, e in VOTES]


def write_ferplus(path: Path, rows: list[tuple[str, list[int]]], header: str = ",".join(HEADER)) -> Path:
    lines = [header] + [f"{usage},fer{i:07d}.png," + ",".join(map(str, v)) for i, (usage, v) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path, list]:
    """A 12-row fer2013.csv (Training 6, PublicTest 3, PrivateTest 3) and its FER+ file with VOTES."""
    usages = ["Training"] * 6 + ["PublicTest"] * 3 + ["PrivateTest"] * 3
    rng = np.random.default_rng(1)
    rows = [(i % 7, rng.integers(0, 256, (48, 48), dtype=np.uint8), u) for i, u in enumerate(usages)]
    csv = write_fer_csv(tmp_path / "fer2013.csv", rows)
    fp = write_ferplus(tmp_path / "fer2013new.csv", [(u, v) for u, (v, _) in zip(usages, VOTES, strict=True)])
    return csv, fp, rows


def fast(**kw) -> ConvertOptions:
    return ConvertOptions(landmarks=False, hog=False, **kw)


def test_majority_rule_and_reasons(pair):
    _, fp, _ = pair
    labels, reasons = majority_labels(read_ferplus(fp))
    got = [FERPLUS_CLASSES[lab] if lab >= 0 else ("no_votes", "unknown_or_nf", "tie")[r]
           for lab, r in zip(labels, reasons, strict=True)]
    assert got == EXPECTED


def test_convert_ferplus_labels_drops_and_soft_labels(pair, tmp_path):
    csv, fp, rows = pair
    meta = convert(csv, tmp_path / "out", fast(ferplus=str(fp)))
    assert meta["class_names"] == list(FERPLUS_CLASSES)
    assert meta["ferplus"]["dropped"] == {"no_votes": 1, "unknown_or_nf": 3, "tie": 1}
    assert meta["ferplus"]["dropped_total"] == 5 and meta["ferplus"]["faces_before"] == 12
    kept = [(i, e) for i, e in enumerate(EXPECTED) if e in FERPLUS_CLASSES]
    labels, soft, images = [], [], []
    for split in ("Training", "PublicTest", "PrivateTest"):
        labels += [FERPLUS_CLASSES[k] for k in np.load(tmp_path / "out" / split / "labels.npy").argmax(1)]
        soft.append(np.load(tmp_path / "out" / split / "soft_labels.npy"))
        images.append(np.load(tmp_path / "out" / split / "images.npy"))
    assert labels == [e for _, e in kept]
    soft = np.concatenate(soft)
    assert soft.dtype == np.float32 and soft.shape == (len(kept), 8)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-6)
    # first kept face: happiness 8, surprise 1, anger 1 of 10 emotion votes (unknown/NF excluded)
    np.testing.assert_allclose(soft[0], [0.1, 0, 0, 0.8, 0, 0.1, 0, 0], atol=1e-6)
    # the images are the same rows of fer2013.csv (alignment by row)
    np.testing.assert_array_equal(np.concatenate(images), np.stack([rows[i][1] for i, _ in kept]))


def test_expressions_with_ferplus_index_the_eight_classes(pair, tmp_path):
    csv, fp, _ = pair
    meta = convert(csv, tmp_path / "out", fast(ferplus=str(fp), expressions=(3, 6, 7)))
    assert meta["class_names"] == ["Happy", "Neutral", "Contempt"]
    assert meta["ferplus"]["excluded_by_expressions"] == 4  # Angry, Surprise, Sad, Fear
    soft = np.load(tmp_path / "out" / "Training" / "soft_labels.npy")
    assert soft.shape == (3, 3)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(soft[0], [1.0, 0.0, 0.0])  # Happy's 8 votes, Surprise/Angry votes removed
    with pytest.raises(ConvertError, match="7=Contempt needs --ferplus"):
        convert(csv, tmp_path / "o2", fast(expressions=(3, 7)))


def test_ferplus_blend_keeps_fer2013_labels_and_mixes_the_votes(pair, tmp_path):
    csv, fp, rows = pair
    meta = convert(csv, tmp_path / "out", fast(ferplus=str(fp), ferplus_blend=0.3))
    assert meta["class_names"] == list(EMOTIONS) and meta["ferplus"]["blend"] == 0.3
    assert meta["ferplus"]["dropped_total"] == 0
    labels, soft = [], []
    for split in ("Training", "PublicTest", "PrivateTest"):
        labels += list(np.load(tmp_path / "out" / split / "labels.npy").argmax(1))
        soft.append(np.load(tmp_path / "out" / split / "soft_labels.npy"))
    soft = np.concatenate(soft)
    assert labels == [label for label, _, _ in rows]  # every face, FER2013's own label
    assert soft.shape == (12, 7) and soft.dtype == np.float32
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-6)
    # row 0: FER2013 says Angry; FER+ votes happiness 8, surprise 1, anger 1 (contempt/unknown/NF not counted)
    np.testing.assert_allclose(soft[0], 0.7 * np.eye(7)[0] + 0.3 * np.array([0.1, 0, 0, 0.8, 0, 0.1, 0]), atol=1e-6)
    # row 2 has only Contempt/unknown/NF votes and row 7 none: the FER2013 one-hot alone
    np.testing.assert_allclose(soft[2], np.eye(7)[2])
    np.testing.assert_allclose(soft[7], np.eye(7)[0])
    assert np.all(soft.argmax(1) == np.array(labels))  # blend < 0.5 never overturns the FER2013 label
    with pytest.raises(ConvertError, match="--ferplus-blend needs --ferplus"):
        convert(csv, tmp_path / "o2", fast(ferplus_blend=0.3))
    with pytest.raises(ConvertError, match=r"--ferplus-blend must be in \(0, 1\]"):
        convert(csv, tmp_path / "o3", fast(ferplus=str(fp), ferplus_blend=1.5))


def test_ferplus_blend_flag_errors(pair, tmp_path, capsys):
    import convert_fer2013

    csv, fp, _ = pair
    for argv, message in [
        (["--ferplus-blend", "0.3"], "--ferplus-blend needs --ferplus"),
        (["--ferplus", str(fp), "--ferplus-blend", "0"], "--ferplus-blend: expected a number in (0, 1], got 0.0"),
        (["--ferplus", str(fp), "--ferplus-blend", "x"], "--ferplus-blend: expected a number in (0, 1], got 'x'"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            convert_fer2013.parse_args(["--csv", str(csv), "--out", str(tmp_path / "o"), *argv])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda lines: lines + ["PrivateTest,fer9.png,1,0,0,0,0,0,0,0,0,0"], "13 data rows but .*fer2013.csv has 12"),
        (lambda lines: lines[:-1], "11 data rows but"),
        (lambda lines: ["usage,image,a,b"] + lines[1:], r"fer2013new.csv:1: header"),
        (lambda lines: lines[:3] + ["Training,x.png,1,2,x,0,0,0,0,0,0,0"] + lines[4:], r"fer2013new.csv:4: vote"),
        (lambda lines: lines[:2] + ["Training,x.png,1,2"] + lines[3:], r"fer2013new.csv:3: expected 12 fields"),
        # one row shifted across the Training/PublicTest boundary
        (lambda lines: lines[:6] + [lines[6].replace("Training", "PublicTest")] + lines[7:],
         r"fer2013new.csv:7: Usage 'PublicTest', but .*line 7\) is 'Training'"),
    ],
)
def test_misaligned_or_malformed_ferplus_file_names_file_and_line(pair, tmp_path, mutate, message):
    csv, fp, _ = pair
    lines = mutate(fp.read_text().splitlines())
    fp.write_text("\n".join(lines) + "\n")
    with pytest.raises(FerPlusFormatError, match=message):
        convert(csv, tmp_path / "out", fast(ferplus=str(fp)))
    assert not (tmp_path / "out").exists()


def test_limit_needs_only_the_rows_read(pair, tmp_path):
    csv, fp, _ = pair
    meta = convert(csv, tmp_path / "out", fast(ferplus=str(fp), limit=4))
    assert meta["counts"]["Training"]["Happy"] == 1 and meta["ferplus"]["dropped"]["tie"] == 1


def test_cli_reports_drops(pair, tmp_path, capsys):
    import convert_fer2013

    csv, fp, _ = pair
    out = tmp_path / "cli"
    assert convert_fer2013.main(["--csv", str(csv), "--out", str(out), "--ferplus", str(fp), "--no-landmarks",
                                 "--no-hog", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "dropped 5 of 12 faces" in printed and "tie 1" in printed
    assert json.loads((out / "meta.json").read_text())["label_source"] == "ferplus"
    with pytest.raises(SystemExit):
        convert_fer2013.main(["--csv", str(csv), "--out", str(tmp_path / "x"), "--expressions", "3,7"])
    assert "7=Contempt needs --ferplus" in capsys.readouterr().err
    bad = write_ferplus(tmp_path / "bad.csv", [("Training", [1] * 10)])
    assert convert_fer2013.main(["--csv", str(csv), "--out", str(tmp_path / "y"), "--ferplus", str(bad),
                                 "--no-landmarks", "--no-hog", "--no-progress"]) == 1
    assert "bad.csv: 1 data rows but" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ soft-label training


def ferplus_dir(tmp_path: Path) -> Path:
    """A converted FER+ directory (raw pixels only) with soft labels, from 8 faces per class x 3 splits."""
    rows = make_rows((8, 4, 4), seed=2)  # 7 FER2013 classes; FER+ votes decide the labels
    csv = write_fer_csv(tmp_path / "fer.csv", rows)
    rng = np.random.default_rng(0)
    votes = []
    for i, (_, _, usage) in enumerate(rows):
        v = rng.integers(0, 3, 10)
        v[8:] = 0
        v[[1, 6][i % 2]] += 6  # Happy or Neutral wins, with other votes around it
        votes.append((usage, v.tolist()))
    fp = write_ferplus(tmp_path / "fp.csv", votes)
    out = tmp_path / "data"
    convert(csv, out, fast(ferplus=str(fp), expressions=(3, 6)))
    return out


def test_soft_label_targets_reach_the_batches(tmp_path):
    from data.batches import batch_generator
    from data.splits import load_split
    from parameters import Config

    data_dir = ferplus_dir(tmp_path)
    train = load_split(data_dir, "Training", "raw", n_classes=2, soft_labels=True)
    assert train.soft_labels is not None and train.soft_labels.shape == (len(train.labels), 2)
    assert np.all(train.soft_labels.argmax(1) == train.labels)
    config = Config().with_overrides({"epochs": 1, "batch_size": 1000, "feature_set": "raw"})
    _, targets = next(batch_generator(train, 2, config))
    np.testing.assert_allclose(targets, train.soft_labels)  # one batch holds all faces, in sorted order
    assert not np.all(np.isin(targets, (0.0, 1.0)))  # genuinely soft


@pytest.mark.usefixtures("eager_tensorflow")
def test_train_soft_labels_end_to_end_and_missing_file_error(tmp_path, capsys):
    import train

    data_dir = ferplus_dir(tmp_path)
    common = ["--data", str(data_dir), "--model", "fernet", "--width", "4", "--features", "raw", "--epochs", "1",
              "--batch-size", "16", "--verbose", "0", "--no-onnx-twin"]
    assert train.main([*common, "--soft-labels", "--out", str(tmp_path / "run")]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["training"]["soft_labels"] is True
    assert json.loads((tmp_path / "run" / "model.meta.json").read_text())["class_names"] == ["Happy", "Neutral"]
    for split in ("Training", "PublicTest", "PrivateTest"):
        (data_dir / split / "soft_labels.npy").unlink()
    assert train.main([*common, "--soft-labels", "--out", str(tmp_path / "run2")]) == 1
    err = capsys.readouterr().err
    assert "Training/soft_labels.npy is missing" in err and "--ferplus" in err


# ------------------------------------------------------------------------------------------------ real data


def test_first_1000_rows_of_the_shared_files(fer_csv_gz, shared_dir, tmp_path):
    ferplus = shared_dir / "data" / "fer2013new.csv"
    if not ferplus.is_file():
        pytest.skip(f"needs {ferplus} (absent)")
    meta = convert(fer_csv_gz, tmp_path / "out", fast(ferplus=str(ferplus), limit=1000))
    counts = meta["counts"]["Training"]
    assert sum(counts.values()) + meta["ferplus"]["dropped_total"] == 1000
    assert 0 < meta["ferplus"]["dropped_total"] < 150  # FER+ drops ~10 % of FER2013 (unknown/NF, ties)
    assert counts["Neutral"] > counts["Angry"] > 0 and counts["Contempt"] >= 1
    soft = np.load(tmp_path / "out" / "Training" / "soft_labels.npy")
    labels = np.load(tmp_path / "out" / "Training" / "labels.npy").argmax(1)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(soft.argmax(1) == labels)  # the majority class is the largest share of emotion votes
    # row 0 of fer2013new.csv: neutral 4, sadness 1, anger 3, disgust 2 -> Neutral
    assert FERPLUS_CLASSES[labels[0]] == "Neutral"
    with pytest.raises(FerPlusFormatError, match="35887 data rows but .* has 12"):
        convert(write_fer_csv(tmp_path / "small.csv", make_rows((2, 1, 1))[:12]), tmp_path / "x",
                fast(ferplus=str(ferplus)))
