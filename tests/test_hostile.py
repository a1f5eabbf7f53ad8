"""Hostile input (issue 25): no file a user passes runs code, no command destroys its input, and every bad input
gets one line on stderr naming the file, flag or host, the exit code of errors.py, and no traceback.

Each case checks: the exit code; the message names the file or flag; no "Traceback" on stderr; the inputs are
byte-identical afterwards (sha256); nothing is left behind (the folder's listing is as before, plus the expected
outputs only). Every payload writes a marker file when it runs; a control shows the payload is live (the plain
loader does run it) and the test asserts our loader leaves no marker.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, make_rows, write_fer_csv
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convert_fer2013
import optimize_hyperparams
import predict
import predict_from_video
from data.fer2013 import Fer2013FormatError, load_fer2013
from errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_NO_FACE, EXIT_OK, EXIT_USAGE, UserError
from inference.images import ImageReadError, load_image
from inference.outputs import destinations
from models.io import ModelFileError, load_model, read_metadata, save_model
from training.trials_io import TrialsFileError, load_trials, loads_trials

CLASSES = ["Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral"]
HYPOTHESIS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# ------------------------------------------------------------------------------------------------- helpers


def listing(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones too) -> sha256; folders -> "dir"."""
    out = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        out[rel] = "dir" if path.is_dir() and not path.is_symlink() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def assert_one_clean_line(err: str, *names: str) -> None:
    """stderr names every one of ``names`` on an ``error:`` line and holds no traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if "error" in line]
    assert lines, err
    for name in names:
        assert any(name in line for line in lines), (name, err)


class _OpenOnLoad:
    """Unpickling this calls ``builtins.open(marker, "w")``: the file appears if the payload ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def payload(marker: Path) -> bytes:
    return pickle.dumps({"trials": _OpenOnLoad(marker)}, protocol=pickle.HIGHEST_PROTOCOL)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A tiny Keras model (48x48 grey -> 7 classes) saved with its metadata, and a copy whose weights are NaN."""
    import keras

    folder = tmp_path_factory.mktemp("models")
    inputs = keras.Input((48, 48, 1))
    flat = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Dense(7, activation="softmax")(flat)
    model = keras.Model(inputs, outputs)
    meta = {"model_name": "tiny", "class_names": CLASSES, "feature_set": "raw", "feature_dim": 0,
            "input_size": [48, 48]}
    good = save_model(model, folder / "tiny.keras", meta)
    model.layers[-1].set_weights([np.full(w.shape, np.nan, np.float32) for w in model.layers[-1].get_weights()])
    broken = save_model(model, folder / "nan.keras", {**meta, "model_name": "nan"})
    return good, broken


def face_png(path: Path, seed: int = 0, size: int = 48) -> Path:
    cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8))
    return path


def tiny_video(path: Path, frames: int = 6) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(frames):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    return path


# ------------------------------------------------------------------------------------- 1. code execution


def test_joblib_payload_is_refused_everywhere_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "ran"
    control = tmp_path / "control"
    pickle.loads(payload(control))  # the payload is live: the plain unpickler runs it
    assert control.exists()
    control.unlink()
    model = tmp_path / "model.joblib"
    model.write_bytes(payload(marker))
    before = listing(tmp_path)
    for call in (read_metadata, load_model):
        with pytest.raises(ModelFileError, match=r"model\.joblib.*refused.*python -m models\.legacy_svm"):
            call(model)
    rc = predict.main(["--image", str(face_png(tmp_path / "f.png")), "--model", str(model), "--assume-face"])
    assert rc == EXIT_ERROR
    assert_one_clean_line(capsys.readouterr().err, str(model))
    (tmp_path / "f.png").unlink()
    assert not marker.exists() and listing(tmp_path) == before


def test_train_flags_never_unpickle_a_joblib(tmp_path, capsys, synthetic_csv):
    import evaluate
    import train
    from experiments import soup

    data = tmp_path / "data"
    assert convert_fer2013.main(["--csv", str(synthetic_csv), "--out", str(data), "--no-landmarks", "--no-hog",
                                 "--no-progress"]) == EXIT_OK
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.joblib"
    evil.write_bytes(payload(marker))
    runs = [
        (evaluate, ["--model", str(evil), "--data", str(data)]),
        (soup, [str(evil), str(evil), "--data", str(data), "--out", str(tmp_path / "soup")]),
        (train, ["--data", str(data), "--model", "A", "--features", "raw", "--epochs", "1", "--init-from", str(evil),
                 "--out", str(tmp_path / "init")]),
        (train, ["--data", str(data), "--model", "A", "--features", "raw", "--epochs", "1", "--teacher", str(evil),
                 "--out", str(tmp_path / "teach")]),
    ]
    for script, argv in runs:
        capsys.readouterr()
        assert script.main([*argv, "--verbose", "0"]) != EXIT_OK, argv
        err = capsys.readouterr().err
        assert "Traceback" not in err and "evil.joblib" in err and "refused" in err, (argv, err)
    assert not marker.exists()


class SkopsPayload:
    """Rebuilding this object (skops calls __setstate__) writes the marker named in its state."""

    def __setstate__(self, state):
        Path(state["marker"]).write_text("ran")
        self.__dict__.update(state)


def test_skops_svm_with_a_foreign_type_is_refused_before_it_is_built(tmp_path):
    import skops.io

    from models.svm import SvmModel, build_svm

    features = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    pipeline = build_svm(2, 6).fit(features, np.arange(40) % 2)
    meta = {"model_name": "svm", "class_names": ["a", "b"], "feature_set": "landmarks", "feature_dim": 6}
    good = save_model(SvmModel(pipeline, 2), tmp_path / "svm.skops", meta)
    loaded, _ = load_model(good)  # the honest file loads and predicts as before
    np.testing.assert_allclose(loaded(features), SvmModel(pipeline, 2)(features))

    marker, control = tmp_path / "ran", tmp_path / "control"
    evil = SkopsPayload()
    evil.__dict__["marker"] = str(control)
    path = tmp_path / "evil.skops"
    skops.io.dump({"pipeline": pipeline, "n_classes": 2, "metadata": meta, "extra": evil}, path)
    skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))  # live when trusted
    assert control.exists()
    evil.__dict__["marker"] = str(marker)
    skops.io.dump({"pipeline": pipeline, "n_classes": 2, "metadata": meta, "extra": evil}, path)
    with pytest.raises(ModelFileError, match=r"evil\.skops: refused.*SkopsPayload"):
        load_model(path)
    garbage = tmp_path / "garbage.skops"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ModelFileError, match=r"garbage\.skops: not a readable \.skops"):
        load_model(garbage)
    assert not marker.exists()


def test_legacy_joblib_converts_only_with_trust(tmp_path, capsys):
    import joblib

    from models import legacy_svm
    from models.svm import build_svm

    features = np.random.default_rng(1).normal(size=(30, 4)).astype(np.float32)
    pipeline = build_svm(3, 4).fit(features, np.arange(30) % 3)
    meta = {"format_version": 1, "model_name": "svm", "class_names": list("abc"), "feature_set": "landmarks",
            "feature_dim": 4}
    old = tmp_path / "model.joblib"
    joblib.dump({"pipeline": pipeline, "n_classes": 3, "metadata": meta}, old)
    digest = hashlib.sha256(old.read_bytes()).hexdigest()
    with pytest.raises(SystemExit) as info:
        legacy_svm.main([str(old)])
    assert info.value.code == EXIT_USAGE and "--trust" in capsys.readouterr().err
    assert legacy_svm.main([str(old), "--trust"]) == EXIT_OK
    model, metadata = load_model(tmp_path / "model.skops")
    assert metadata["class_names"] == list("abc") and model(features).shape == (30, 3)
    assert hashlib.sha256(old.read_bytes()).hexdigest() == digest


def _trials_pickle(tmp_path: Path) -> bytes:
    from hyperopt import STATUS_OK, Trials, fmin, hp, tpe

    trials = Trials()
    fmin(lambda p: {"loss": p["x"], "status": STATUS_OK, "acc": np.float64(0.5), "curve": np.arange(3)},
         {"x": hp.uniform("x", 0, 1)}, algo=tpe.suggest, max_evals=3, trials=trials,
         rstate=np.random.default_rng(0), show_progressbar=False)
    trials.attachments["fer_search_signature"] = "abc"
    return pickle.dumps(trials, protocol=pickle.HIGHEST_PROTOCOL)


def test_trials_file_payload_is_refused_and_real_trials_still_load(tmp_path):
    real = _trials_pickle(tmp_path)
    trials = loads_trials(real)
    assert len(trials.trials) == 3 and trials.attachments["fer_search_signature"] == "abc"
    marker = tmp_path / "ran"
    path = tmp_path / "trials.pkl"
    path.write_bytes(payload(marker))
    with pytest.raises(TrialsFileError, match=r"--trials-file .*trials\.pkl: not a readable.*refused io.open"):
        load_trials(path)
    # a payload hidden inside a genuine Trials (in a trial's result) is refused as well
    doctored = pickle.loads(real)
    doctored.trials[0]["result"]["evil"] = _OpenOnLoad(marker)
    path.write_bytes(pickle.dumps(doctored))
    with pytest.raises(TrialsFileError, match="refused"):
        load_trials(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "not a readable"),
        (b"not a pickle at all", "not a readable"),
        (pickle.dumps({"a": 1}), "holds a dict"),
        (b"truncated", "not a readable"),
    ],
)
def test_corrupt_trials_files_are_one_line(tmp_path, capsys, content, message):
    if content == b"truncated":
        content = _trials_pickle(tmp_path)[:200]
    data = tmp_path / "data"
    data.mkdir()
    (data / "meta.json").write_text("{}")
    trials = tmp_path / "trials.pkl"
    trials.write_bytes(content)
    before = listing(tmp_path)
    rc = optimize_hyperparams.main(["--data", str(data), "--trials-file", str(trials), "--out",
                                    str(tmp_path / "search" / "best.json"), "--max-evals", "1"])
    assert rc == EXIT_ERROR
    err = capsys.readouterr().err
    assert_one_clean_line(err, str(trials))
    assert message in err and listing(tmp_path) == before


def test_damaged_trials_structure_is_a_clear_error(tmp_path):
    from hyperopt import Trials

    broken = Trials()
    broken._trials = 5
    with pytest.raises(TrialsFileError, match="damaged hyperopt Trials"):
        loads_trials(pickle.dumps(broken))


def test_unreachable_mongo_gives_up_quickly_naming_the_host(tmp_path, capsys, monkeypatch):
    import training.trials_io

    monkeypatch.setattr(training.trials_io, "MONGO_TIMEOUT_S", 1.0)
    data = tmp_path / "data"
    data.mkdir()
    (data / "meta.json").write_text("{}")
    start = time.perf_counter()
    rc = optimize_hyperparams.main(["--data", str(data), "--mongo", "mongo://127.0.0.1:9/fer/jobs", "--exp-key", "x",
                                    "--out", str(tmp_path / "best.json"), "--max-evals", "1"])
    assert time.perf_counter() - start < 10
    assert rc == EXIT_ERROR
    assert_one_clean_line(capsys.readouterr().err, "127.0.0.1:9")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


# ------------------------------------------------------------------------------------ 2. inputs destroyed


@pytest.mark.parametrize("how", ["same", "symlink", "hardlink", "plot"])
def test_predict_never_overwrites_its_input(tmp_path, capsys, tiny_models, how):
    image = face_png(tmp_path / "p.png")
    target = image
    if how == "symlink":
        target = tmp_path / "link.png"
        target.symlink_to(image)
    elif how == "hardlink":
        target = tmp_path / "hard.png"
        os.link(image, target)
    before = listing(tmp_path)
    flag = "--plot" if how == "plot" else "--output"
    rc = predict.main(["--image", str(image), flag, str(target), "--model", str(tiny_models[0]), "--assume-face"])
    assert rc == EXIT_ERROR
    assert_one_clean_line(capsys.readouterr().err, flag, str(target))
    assert listing(tmp_path) == before


def test_predict_gives_every_input_its_own_output(tmp_path, capsys, tiny_models):
    (tmp_path / "x").mkdir()
    images = [face_png(tmp_path / "a.png", 1), tmp_path / "a.jpg", face_png(tmp_path / "b.png", 3),
              face_png(tmp_path / "x" / "b.png", 4)]
    cv2.imwrite(str(images[1]), np.full((48, 48), 90, np.uint8))
    before = listing(tmp_path)
    out = tmp_path / "out"
    rc = predict.main(["--image", *map(str, images), "--output", str(out), "--model", str(tiny_models[0]),
                       "--assume-face"])
    assert rc == EXIT_OK, capsys.readouterr().err
    written = sorted(p.name for p in out.iterdir())
    assert written == ["a_jpg_annotated.png", "a_png_annotated.png", "b_png-2_annotated.png", "b_png_annotated.png"]
    after = listing(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("out")} == before  # inputs intact, no debris
    assert destinations(out, [Path("q/c.png")], "_annotated") == [out / "c_annotated.png"]


def test_predict_output_format_is_checked_before_the_work(tmp_path, capsys, tiny_models):
    image = face_png(tmp_path / "p.png")
    before = listing(tmp_path)
    for flag, name in (("--output", "x.xyz"), ("--plot", "bars.nope"), ("--output", "x.gifx")):
        rc = predict.main(["--image", str(image), flag, str(tmp_path / name), "--model", str(tiny_models[0])])
        assert rc == EXIT_ERROR
        assert_one_clean_line(capsys.readouterr().err, flag, name)
    assert listing(tmp_path) == before


def test_predict_writes_through_a_temporary_name(tmp_path, capsys, tiny_models, monkeypatch):
    image = face_png(tmp_path / "p.png")
    out = tmp_path / "annotated.png"
    out.write_bytes(b"previous result")
    seen = []
    real_imwrite = cv2.imwrite

    def spy(name, img):
        seen.append(Path(name))
        assert not out.read_bytes().startswith(b"\x89PNG")  # the final name is untouched while writing
        return real_imwrite(name, img)

    monkeypatch.setattr(cv2, "imwrite", spy)
    assert predict.main(["--image", str(image), "--output", str(out), "--model", str(tiny_models[0]),
                         "--assume-face"]) == EXIT_OK
    assert seen and seen[0] != out and seen[0].parent == out.parent and seen[0].name.startswith(".annotated.tmp-")
    assert cv2.imread(str(out)) is not None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["annotated.png", "p.png"]


def test_video_output_that_is_the_source_is_refused(tmp_path, capsys):
    video = tiny_video(tmp_path / "a.mp4")
    link = tmp_path / "b.mp4"
    link.symlink_to(video)
    before = listing(tmp_path)
    for output in (video, link):
        rc = predict_from_video.main(["--source", str(video), "--no-display", "--output", str(output)])
        assert rc == EXIT_ERROR
        assert_one_clean_line(capsys.readouterr().err, "--output", str(output))
    rc = predict_from_video.main(["--source", str(video), "--no-display", "--output", str(tmp_path / "o.xyz")])
    assert rc == EXIT_ERROR
    assert_one_clean_line(capsys.readouterr().err, "--output", "o.xyz")
    assert listing(tmp_path) == before


def test_video_is_written_atomically(tmp_path, capsys, tiny_models):
    video = tiny_video(tmp_path / "a.mp4", frames=6)
    out = tmp_path / "out.mp4"
    rc = predict_from_video.main(["--source", str(video), "--no-display", "--output", str(out), "--model",
                                  str(tiny_models[0]), "--assume-face", "--every-ms", "0"])
    assert rc == EXIT_OK, capsys.readouterr().err
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6
    capture.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "out.mp4"]
    # a model that fails mid-video leaves neither the output nor its temporary file
    rc = predict_from_video.main(["--source", str(video), "--no-display", "--output", str(tmp_path / "nan.mp4"),
                                  "--model", str(tiny_models[1]), "--assume-face"])
    assert rc == EXIT_ERROR
    assert_one_clean_line(capsys.readouterr().err, "non-finite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "out.mp4"]


# --------------------------------------------------------------------------------------------- 3. NaN


def test_a_nan_model_is_one_error_and_json_never_holds_nan(tmp_path, capsys, tiny_models):
    image = face_png(tmp_path / "p.png")
    rc = predict.main(["--image", str(image), "--model", str(tiny_models[1]), "--assume-face", "--json"])
    assert rc == EXIT_ERROR
    captured = capsys.readouterr()
    assert_one_clean_line(captured.err, str(image), "non-finite", "nan.keras")
    assert json.loads(captured.out) == [] and "NaN" not in captured.out


# ---------------------------------------------------------------------------- 4. tracebacks -> one line


def test_truncated_gzip_csv_names_the_file(tmp_path, capsys):
    full = write_fer_csv(tmp_path / "full.csv.gz", make_rows((3, 1, 1)))
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    before = listing(tmp_path)
    rc = convert_fer2013.main(["--csv", str(cut), "--out", str(tmp_path / "out"), "--no-landmarks", "--no-hog"])
    assert rc == EXIT_ERROR
    err = capsys.readouterr().err
    assert_one_clean_line(err, str(cut), "truncated")
    assert "--skip-bad-rows" not in err and listing(tmp_path) == before


@pytest.mark.parametrize("where", ["under_a_file", "proc"])
def test_convert_unwritable_destination_fails_before_the_work(tmp_path, capsys, synthetic_csv, monkeypatch, where):
    import data.convert

    def never(*args, **kwargs):
        raise AssertionError("the features were computed before the destination was checked")

    monkeypatch.setattr(data.convert, "load_fer2013", never)
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "out" if where == "under_a_file" else Path("/proc/no_such_fer_dir/out")
    before = listing(tmp_path)
    rc = convert_fer2013.main(["--csv", str(synthetic_csv), "--out", str(out), "--no-landmarks"])
    assert rc == EXIT_ERROR
    assert_one_clean_line(capsys.readouterr().err, "--out", str(out))
    assert listing(tmp_path) == before


def test_convert_full_disk_fails_before_the_features(tmp_path, capsys, synthetic_csv, monkeypatch):
    import shutil

    import data.convert

    monkeypatch.setattr(data.convert, "compute_feature_arrays", lambda *a, **k: pytest.fail("features computed"))
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    before = listing(tmp_path)
    rc = convert_fer2013.main(["--csv", str(synthetic_csv), "--out", str(tmp_path / "out"), "--no-landmarks"])
    assert rc == EXIT_ERROR
    assert_one_clean_line(capsys.readouterr().err, "--out", "MB free")
    assert listing(tmp_path) == before


def test_convert_write_error_midway_is_one_line_and_leaves_nothing(tmp_path, capsys, synthetic_csv, monkeypatch):
    import errno

    import data.convert

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(data.convert.np, "save", full_disk)
    before = listing(tmp_path)
    rc = convert_fer2013.main(["--csv", str(synthetic_csv), "--out", str(tmp_path / "out"), "--no-landmarks",
                               "--no-hog"])
    assert rc == EXIT_ERROR
    assert_one_clean_line(capsys.readouterr().err, "--out", "No space left")
    assert listing(tmp_path) == before


def test_garbage_hdf5_model_is_one_line(tmp_path, capsys):
    image = face_png(tmp_path / "p.png")
    model = tmp_path / "peer.hdf5"
    model.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(300))
    before = listing(tmp_path)
    assert predict.main(["--image", str(image), "--model", str(model), "--assume-face"]) == EXIT_ERROR
    assert_one_clean_line(capsys.readouterr().err, str(model))
    assert listing(tmp_path) == before


_SIGNAL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, {root!r})
import data.convert, convert_fer2013
real_save = data.convert.np.save
calls = []
def save(*args, **kwargs):
    calls.append(1)
    real_save(*args, **kwargs)
    if len(calls) == 2:   # mid-write: some arrays are in the hidden folder, others are not
        os.kill(os.getpid(), signal.{signal})
data.convert.np.save = save
raise SystemExit(convert_fer2013.main(["--csv", {csv!r}, "--out", {out!r}, "--no-landmarks", "--no-hog",
                                       "--no-progress"]))
"""


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_convert_interrupted_while_writing_says_so_and_cleans_up(tmp_path, synthetic_csv, signame):
    before = listing(tmp_path)
    script = _SIGNAL_SCRIPT.format(root=str(ROOT), csv=str(synthetic_csv), out=str(tmp_path / "out"), signal=signame)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert done.returncode == EXIT_INTERRUPTED, done.stderr
    assert "Traceback" not in done.stderr and "interrupted" in done.stderr and "Rerun" in done.stderr
    assert listing(tmp_path) == before  # no .out.tmp-* folder


# -------------------------------------------------------------------------------------- 6. real-world files


def test_csv_with_a_byte_order_mark_is_accepted(tmp_path, capsys):
    rows = make_rows((1, 1, 1))
    plain = write_fer_csv(tmp_path / "plain.csv", rows)
    bom = tmp_path / "excel.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    a, b = load_fer2013(plain), load_fer2013(bom)
    assert a.n_rows == b.n_rows == 21
    np.testing.assert_array_equal(a.splits["Training"].images, b.splits["Training"].images)
    assert convert_fer2013.main(["--csv", str(bom), "--out", str(tmp_path / "out"), "--no-landmarks",
                                 "--no-hog", "--no-progress"]) == EXIT_OK


@pytest.mark.parametrize(
    "text, header_error",
    [("emotion,Usage\n1,Training\n", True), ("hello\n", True), ("emotion,pixels,Usage\n9,1 2,Training\n", False)],
)
def test_skip_bad_rows_is_advised_only_where_it_helps(tmp_path, capsys, text, header_error):
    csv = tmp_path / "x.csv"
    csv.write_text(text)
    rc = convert_fer2013.main(["--csv", str(csv), "--out", str(tmp_path / "out"), "--no-landmarks"])
    assert rc == EXIT_ERROR
    err = capsys.readouterr().err
    assert_one_clean_line(err, str(csv))
    assert ("--skip-bad-rows" in err) is not header_error


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height pixels but carries one tiny IDAT (a "decompression bomb" header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def test_huge_images_are_refused_from_their_header(tmp_path, capsys, monkeypatch):
    bomb = _png_header_only(tmp_path / "bomb.png", 20000, 20000)
    medium = _png_header_only(tmp_path / "medium.png", 9000, 7000)  # 63 MP: over 50 MP, under PIL's own limit
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded before the size check"))
    for path, size in ((bomb, "over the 50 MP limit"), (medium, "9000 x 7000 = 63.0 MP")):
        with pytest.raises(ImageReadError, match=f"{path.name}.*{size}.*--max-pixels"):
            load_image(path)
    monkeypatch.undo()
    jpg = tmp_path / "small.jpg"
    cv2.imwrite(str(jpg), np.zeros((60, 80), np.uint8))
    with pytest.raises(ImageReadError, match=r"80 x 60 = 0.0 MP is over the 0.001 MP"):
        load_image(jpg, max_pixels=1000)
    assert load_image(jpg, max_pixels=5000).shape == (60, 80)
    before = listing(tmp_path)
    assert predict.main(["--image", str(bomb), "--assume-face"]) == EXIT_ERROR
    assert_one_clean_line(capsys.readouterr().err, str(bomb), "--max-pixels")
    with pytest.raises(SystemExit):
        predict.parse_args(["--image", "x.png", "--max-pixels", "0"])
    assert listing(tmp_path) == before


# ------------------------------------------------------------------------------------------ 8. exit codes


def test_predict_exit_code_3_for_no_face(tmp_path, capsys, tiny_models):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 120), 128, np.uint8))
    assert predict.main(["--image", str(blank), "--model", str(tiny_models[0])]) == EXIT_NO_FACE
    assert "no face found" in capsys.readouterr().err


def test_user_errors_share_one_base_class():
    from data.convert import ConvertError
    from inference.classifiers import PredictorError
    from inference.outputs import OutputPathError
    from training.search import SearchError

    for cls in (ConvertError, Fer2013FormatError, ModelFileError, OutputPathError, PredictorError, SearchError,
                TrialsFileError):
        assert issubclass(cls, UserError), cls


# ------------------------------------------------------------------------------------------------ 7. noise


@pytest.mark.slow
def test_tensorflow_logging_is_silent_by_default(tmp_path, tiny_models):
    image = face_png(tmp_path / "p.png")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    command = [sys.executable, str(ROOT / "predict.py"), "--image", str(image), "--model", str(tiny_models[0]),
               "--assume-face"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert done.returncode == EXIT_OK, done.stderr
    # our own one-line note (this model has no ONNX twin, so TensorFlow runs it) and nothing of TensorFlow's
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("note: ") and "no ONNX twin" in lines[0], done.stderr
    assert done.stdout.count("\n") == 1 and str(image) in done.stdout


def test_hidden_stderr_is_replayed_when_the_import_fails(capfd):
    from tf_logging import _stderr_captured

    with _stderr_captured():
        os.write(2, b"C++ start-up noise\n")
    assert "noise" not in capfd.readouterr().err
    with pytest.raises(RuntimeError), _stderr_captured():
        os.write(2, b"why the import failed\n")
        raise RuntimeError
    assert "why the import failed" in capfd.readouterr().err


# ------------------------------------------------------------------------------ property-based: csv, images


def _valid_csv_bytes() -> bytes:
    rows = make_rows((1, 1, 1), seed=3)[:5]
    lines = ["emotion,pixels,Usage"] + [f"{e},{' '.join(map(str, img.ravel()))},{u}" for e, img, u in rows]
    return ("\n".join(lines) + "\n").encode()


VALID_CSV = _valid_csv_bytes()


def _csv_result_or_own_error(path: Path, **kwargs) -> None:
    try:
        data = load_fer2013(path, **kwargs)
    except Fer2013FormatError as err:
        assert str(path) in str(err)
        return
    for split in data.splits.values():
        assert split.images.dtype == np.uint8 and split.images.shape[1:] == (48, 48)
        assert split.labels.min() >= 0 and split.labels.max() <= 6


@HYPOTHESIS
@given(data=st.binary(max_size=400), gz=st.booleans(), skip=st.booleans())
def test_csv_parser_random_bytes(tmp_path, data, gz, skip):
    path = tmp_path / "random.csv"
    path.write_bytes(gzip.compress(data) if gz else data)
    _csv_result_or_own_error(path, skip_bad_rows=skip)


@HYPOTHESIS
@given(cut=st.integers(0, len(VALID_CSV)), gz=st.booleans(), skip=st.booleans())
def test_csv_parser_random_truncations(tmp_path, cut, gz, skip):
    path = tmp_path / "cut.csv"
    payload_bytes = gzip.compress(VALID_CSV) if gz else VALID_CSV
    path.write_bytes(payload_bytes[: cut * len(payload_bytes) // len(VALID_CSV)])
    _csv_result_or_own_error(path, skip_bad_rows=skip)


_PIXELS = " ".join(["7"] * 2304)
_field = st.one_of(
    st.integers(-3, 10).map(str), st.text(max_size=8), st.sampled_from(["Training", "PublicTest", "PrivateTest"]),
    st.sampled_from([_PIXELS, _PIXELS[:-2], _PIXELS + " 9", _PIXELS.replace("7", "256", 1),
                     _PIXELS.replace("7", "x", 1), _PIXELS.replace(" ", "  ", 5), '"' + _PIXELS + '"']),
)


@HYPOTHESIS
@given(rows=st.lists(st.lists(_field, min_size=1, max_size=4).map(",".join), max_size=6),
       header=st.sampled_from(["emotion,pixels,Usage", "emotion, Usage, pixels", "\ufeffemotion,pixels,Usage", "x"]),
       skip=st.booleans(), limit=st.one_of(st.none(), st.integers(1, 4)))
def test_csv_parser_random_rows(tmp_path, rows, header, skip, limit):
    path = tmp_path / "rows.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8", errors="surrogatepass")
    _csv_result_or_own_error(path, skip_bad_rows=skip, limit=limit)


def _encoded(extension: str) -> bytes:
    ok, buffer = cv2.imencode(extension, np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    assert ok
    return buffer.tobytes()


IMAGES = {ext: _encoded(ext) for ext in (".png", ".jpg", ".bmp", ".tiff", ".webp")}


def _image_or_own_error(path: Path) -> None:
    try:
        image = load_image(path, max_pixels=10_000)
    except ImageReadError as err:
        assert str(path) in str(err)
        return
    assert image.ndim in (2, 3) and image.shape[0] * image.shape[1] <= 10_000


@HYPOTHESIS
@given(data=st.binary(max_size=600), extension=st.sampled_from(sorted(IMAGES)))
def test_image_loader_random_bytes(tmp_path, data, extension):
    path = tmp_path / f"random{extension}"
    path.write_bytes(IMAGES[extension][:8] + data)  # a real magic number, then noise
    _image_or_own_error(path)


@HYPOTHESIS
@given(extension=st.sampled_from(sorted(IMAGES)), fraction=st.floats(0, 1), flips=st.lists(st.integers(0, 10**6),
                                                                                            max_size=3))
def test_image_loader_random_truncations_and_bit_flips(tmp_path, extension, fraction, flips):
    data = bytearray(IMAGES[extension][: int(len(IMAGES[extension]) * fraction)])
    for position in flips:
        if data:
            data[position % len(data)] ^= 0xFF
    path = tmp_path / f"cut{extension}"
    path.write_bytes(bytes(data))
    _image_or_own_error(path)
