"""train.py, evaluate.py, training/ and inference.evaluation end to end on tiny synthetic converted directories."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, write_converted

# Each test trains eagerly (conftest.eager_tensorflow); the module's trained_run fixture, built first, traces.
pytestmark = pytest.mark.usefixtures("eager_tensorflow")


def run_main(*args: str | Path, onnx_twin: bool = False) -> int:
    """train.py's main; without the ONNX twin unless asked (converting Model A takes ~15 s; one test checks it)."""
    import train

    return train.main([str(a) for a in args] + ([] if onnx_twin else ["--no-onnx-twin"]))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_converted(tmp_path_factory.mktemp("converted"))


@pytest.fixture(scope="module")
def trained_run(data_dir, tmp_path_factory) -> Path:
    """One epoch of Model A on landmarks + sliding-window HOG through train.py, with --evaluate."""
    out = tmp_path_factory.mktemp("run")
    rc = run_main("--data", data_dir, "--model", "A", "--features", "landmarks_hog_windows", "--epochs", "1",
                  "--batch-size", "32", "--out", out, "--evaluate", "--verbose", "0", "--seed", "3")
    assert rc == 0
    return out


def test_train_writes_the_run_directory(trained_run, data_dir):
    for name in ("model.keras", "model.meta.json", "history.csv", "learning_curves.png", "config.json",
                 "checkpoints/last.keras", "checkpoints/state.json", "metrics.json",
                 "confusion_matrix_PrivateTest.png", "confusion_matrix_PrivateTest.json"):
        assert (trained_run / name).is_file(), name
    assert any((trained_run / "logs" / "validation").iterdir())
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert 0 <= metrics["private_test_accuracy"] <= 1 and 0 <= metrics["public_test_accuracy"] <= 1
    assert metrics["PrivateTest"]["n"] == 32 and set(metrics["PrivateTest"]["per_class"]) == set(CLASSES)
    assert sum(map(sum, metrics["PrivateTest"]["confusion_matrix"])) == 32
    history = (trained_run / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,") and "val_accuracy" in history[0] and len(history) == 2
    state = json.loads((trained_run / "checkpoints" / "state.json").read_text())
    assert state["epoch"] == 1
    assert metrics["public_test_accuracy"] == pytest.approx(state["best"])  # saved model = the one selected


def test_saved_model_carries_metadata_and_training_statistics(trained_run, data_dir):
    from models.io import load_model

    model, meta = load_model(trained_run / "model.keras")
    assert meta["class_names"] == CLASSES and meta["expressions"] == [0, 3, 4]
    assert meta["feature_set"] == "landmarks_hog_windows" and meta["feature_dim"] == 2728
    assert meta["input_size"] == [48, 48] and meta["data_sha256"] == "0" * 64
    assert meta["config"]["network"]["model"] == "A" and meta["config"]["dataset"]["expressions"] == CLASSES
    assert "public_test_accuracy" in meta["metrics"]
    train_features = np.concatenate(
        [np.load(data_dir / "Training" / "landmarks.npy").reshape(96, -1),
         np.load(data_dir / "Training" / "hog_features.npy")], axis=1)
    norm = model.get_layer("feature_norm")
    np.testing.assert_allclose(np.ravel(norm.mean), train_features.mean(0), rtol=1e-4, atol=1e-4)


def test_train_writes_the_onnx_twin_that_predict_runs(data_dir, tmp_path, capsys):
    from inference.backends import open_backend, twin_problem
    from models.io import load_model

    out = tmp_path / "twin"
    assert run_main("--data", data_dir, "--model", "fernet", "--width", "4", "--features", "raw", "--epochs", "1",
                    "--batch-size", "32", "--out", out, "--verbose", "0", "--int8", onnx_twin=True) == 0
    printed = capsys.readouterr().out
    assert f"ONNX twin: {out / 'model.onnx'}" in printed
    assert f"int8 export: {out / 'model.int8.onnx'}" in printed  # calibrated on 48 of the 96 Training faces
    assert twin_problem(out / "model.keras") is None and twin_problem(out / "model.keras", int8=True) is None
    assert open_backend(out / "model.keras", "int8").path == out / "model.int8.onnx"
    faces = np.load(data_dir / "PublicTest" / "images.npy")[:8].reshape(-1, 48, 48)
    model, _ = load_model(out / "model.keras")
    onnx = open_backend(out / "model.keras", "onnx")
    assert onnx.name == "onnx"
    np.testing.assert_allclose(onnx.predict(faces), np.asarray(model(faces[..., None].astype(np.float32))), atol=1e-5)
    assert run_main("--data", data_dir, "--model", "fernet", "--width", "4", "--features", "raw", "--epochs", "1",
                    "--batch-size", "32", "--out", tmp_path / "none", "--verbose", "0") == 0
    assert not (tmp_path / "none" / "model.onnx").exists()  # --no-onnx-twin


def test_init_from_a_shallower_fernet_grows_it_and_refuses_to_shrink(data_dir, tmp_path, capsys):
    from models.io import load_model

    fernet = ["--data", data_dir, "--model", "fernet", "--width", "4", "--features", "raw", "--batch-size", "32",
              "--verbose", "0"]
    assert run_main(*fernet, "--epochs", "1", "--out", tmp_path / "small") == 0
    small, _ = load_model(tmp_path / "small" / "model.keras")
    # learning rate ~0: the grown model keeps the weights it started from
    assert run_main(*fernet, "--epochs", "1", "--last-stage-blocks", "3", "--learning-rate", "1e-12",
                    "--init-from", tmp_path / "small" / "model.keras", "--out", tmp_path / "grown") == 0
    grown, meta = load_model(tmp_path / "grown" / "model.keras")
    assert meta["config"]["network"]["last_stage_blocks"] == 3
    assert grown.count_params() > small.count_params()
    # batch-norm statistics aside: the source's kernels, and a new block whose last batch norm still outputs 0
    for layer in small.layers:
        if layer.name.endswith(("_conv1", "_conv2", "_proj")) or layer.name == "probabilities":
            for ours, theirs in zip(grown.get_layer(layer.name).get_weights(), layer.get_weights(), strict=True):
                np.testing.assert_allclose(ours, theirs, atol=1e-6)
    np.testing.assert_allclose(grown.get_layer("s3b3_bn2").get_weights()[:2], 0, atol=1e-6)
    capsys.readouterr()
    assert run_main(*fernet, "--epochs", "1", "--last-stage-blocks", "1", "--init-from",
                    tmp_path / "grown" / "model.keras", "--out", tmp_path / "shrunk") == 1
    err = capsys.readouterr().err
    assert "--init-from" in err and "--width 4 --last-stage-blocks 3" in err  # the flags that would fit


def test_no_standardize_features_feeds_raw_values_as_the_2016_code(data_dir, tmp_path):
    from models.io import load_model

    out = tmp_path / "raw_features"
    assert run_main("--data", data_dir, "--model", "A", "--features", "landmarks", "--epochs", "1", "--batch-size",
                    "32", "--no-standardize-features", "--out", out, "--verbose", "0") == 0
    model, meta = load_model(out / "model.keras")
    norm = model.get_layer("feature_norm")
    np.testing.assert_array_equal(np.ravel(norm.mean), 0.0)
    np.testing.assert_array_equal(np.ravel(norm.variance), 1.0)
    features = np.load(data_dir / "Training" / "landmarks.npy").reshape(96, -1)[:4]
    np.testing.assert_allclose(np.asarray(norm(features)), features, atol=1e-3)  # identity
    assert meta["config"]["network"]["standardize_features"] is False


def run_evaluate(*args: str | Path) -> int:
    import evaluate

    return evaluate.main([str(a) for a in args])


def test_evaluate_matches_training_and_tta_runs(trained_run, data_dir, tmp_path, capsys):
    before = json.loads((trained_run / "metrics.json").read_text())
    assert run_evaluate("--model", trained_run / "model.keras", "--data", data_dir, "--out", tmp_path,
                        "--verbose", "0") == 0
    again = json.loads((tmp_path / "metrics.json").read_text())
    assert again["private_test_accuracy"] == pytest.approx(before["private_test_accuracy"])
    assert f"PrivateTest accuracy {before['private_test_accuracy']:.4f} (32 faces)" in capsys.readouterr().out
    assert run_evaluate("--model", trained_run / "model.keras", "--data", data_dir, "--out", tmp_path / "tta",
                        "--tta", "--split", "PrivateTest", "--verbose", "0") == 0
    with_tta = json.loads((tmp_path / "tta" / "metrics.json").read_text())
    assert with_tta["PrivateTest"]["tta"] is True  # landmarks + sliding-window HOG can be mirrored
    assert "PublicTest" not in with_tta and 0.0 <= with_tta["private_test_accuracy"] <= 1.0


def test_evaluate_refuses_other_classes_and_mixed_modes(trained_run, tmp_path, capsys):
    other = write_converted(tmp_path / "other", {"PublicTest": 8, "PrivateTest": 8}, ["Angry", "Fear", "Sad"])
    assert run_evaluate("--model", trained_run / "model.keras", "--data", other) == 1
    err = capsys.readouterr().err
    assert "classes disagree" in err and str(other) in err and "Traceback" not in err
    assert run_evaluate("--model", tmp_path / "missing.keras", "--data", other) == 1
    assert "missing.keras" in capsys.readouterr().err
    for bad in (["--data", str(other), "--images-dir", str(tmp_path)], ["--data", str(other), "--assume-face"],
                ["--images-dir", str(tmp_path), "--split", "PublicTest"], []):
        with pytest.raises(SystemExit) as exit_info:
            run_evaluate("--model", trained_run / "model.keras", *bad)
        assert exit_info.value.code == 2


def test_missing_feature_arrays_are_a_clear_error(tmp_path, capsys):
    data = write_converted(tmp_path / "nohog", {"Training": 8, "PublicTest": 8}, hog=None)
    rc = run_main("--data", data, "--model", "A", "--features", "landmarks_hog_windows", "--out", tmp_path / "r")
    assert rc == 1
    err = capsys.readouterr().err
    assert "hog" in err and "landmarks_hog_windows" in err
    no_landmarks = write_converted(tmp_path / "nolm", {"Training": 8, "PublicTest": 8}, hog=None, landmarks=False)
    assert run_main("--data", no_landmarks, "--features", "landmarks", "--out", tmp_path / "r2") == 1
    assert "landmarks.npy" in capsys.readouterr().err
    assert run_main("--data", tmp_path / "absent", "--out", tmp_path / "r3") == 1
    assert "meta.json" in capsys.readouterr().err


def test_bad_arguments_and_params_files(tmp_path, data_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main("--data", data_dir, "--evaluate-only")  # scoring a saved model is evaluate.py's job
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        run_main("--data", data_dir, "--optimizer", "lbfgs")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"learning_rat": 0.1}))
    assert run_main("--data", data_dir, "--params", bad, "--out", tmp_path / "r") == 1
    assert "learning_rat" in capsys.readouterr().err
    wrong_classes = tmp_path / "classes.json"
    wrong_classes.write_text(json.dumps({"expressions": ["Angry", "Happy"], "epochs": 1}))
    assert run_main("--data", data_dir, "--params", wrong_classes, "--model", "A", "--features", "raw",
                    "--out", tmp_path / "r") == 1
    assert "disagree" in capsys.readouterr().err


def test_flags_win_over_params_file(tmp_path, data_dir):
    import train

    params = tmp_path / "best.json"
    params.write_text(json.dumps({"params": {"learning_rate": 0.05, "keep_prob": 0.8, "optimizer": "adam"},
                                  "public_test_accuracy": 0.5}))
    args = train.parse_args(["--data", str(data_dir), "--params", str(params), "--learning-rate", "0.001",
                             "--no-augment", "--early-stopping-patience", "3", "--model", "A"])
    config = train.build_config(args)
    assert config.hyperparams.learning_rate == 0.001  # flag
    assert config.hyperparams.keep_prob == 0.8 and config.hyperparams.optimizer == "adam"  # file
    assert config.hyperparams.augment is False and config.training.early_stopping_patience == 3
    assert config.network.model == "A" and config.hyperparams.decay_step == 50  # flag, default


def test_resume_continues_exactly(tmp_path, data_dir):
    from parameters import Config
    from training.trainer import train

    config = Config().with_overrides({"model": "fernet", "width": 4, "feature_set": "landmarks", "epochs": 2,
                                      "batch_size": 48, "keep_prob": 0.5, "augment": True})
    full = train(config, data_dir, tmp_path / "full", verbose=0)
    part = train(config.with_overrides({"epochs": 1}), data_dir, tmp_path / "part", verbose=0)
    resumed = train(config, data_dir, tmp_path / "part", resume=True, verbose=0)
    assert resumed.epochs_run == full.epochs_run == 2
    # The wall time of the epochs adds up over the resume (reproduce_table reports it per cell).
    assert 0 < part.train_seconds < resumed.train_seconds
    np.testing.assert_allclose(resumed.history["val_loss"], full.history["val_loss"], rtol=1e-5)
    np.testing.assert_allclose(resumed.history["loss"], full.history["loss"], rtol=1e-5)
    rows = (tmp_path / "part" / "history.csv").read_text().splitlines()
    assert len(rows) == 3  # header + one row per epoch, no duplicates


def test_bare_resume_continues_the_saved_config(tmp_path, data_dir):
    import train
    from parameters import Config
    from training.run import TrainingError

    saved = Config().with_overrides({"model": "A", "feature_set": "landmarks", "epochs": 3,
                                     "learning_rate": 0.05}).to_dict()
    del saved["hyperparams"]["global_clipnorm"]  # saved before the field existed: those runs did not clip
    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "state.json").write_text(json.dumps({"config": saved}))
    (checkpoints / "last.keras").write_bytes(b"")
    args = ["--data", str(data_dir), "--out", str(tmp_path / "run")]
    config = train.build_config(train.parse_args([*args, "--resume", "--epochs", "5"]))
    assert (config.network.model, config.dataset.feature_set) == ("A", "landmarks")
    assert config.hyperparams.learning_rate == 0.05 and config.training.epochs == 5  # saved, then the flag
    assert config.hyperparams.global_clipnorm == 0.0
    fresh = train.build_config(train.parse_args(args))  # no --resume: the defaults
    assert fresh.network.model == "B" and fresh.hyperparams.global_clipnorm == 5.0
    (checkpoints / "state.json").write_text("{")
    with pytest.raises(TrainingError, match="state.json is unreadable"):
        train.build_config(train.parse_args([*args, "--resume"]))


def test_modern_recipe_and_early_stopping(tmp_path, data_dir):
    from parameters import Config
    from training.trainer import train

    config = Config().with_overrides({
        "model": "fernet", "width": 4, "feature_set": "raw", "epochs": 4, "batch_size": 48, "optimizer": "adam",
        "optimizer_param": 0.9, "learning_rate": 1e-12, "schedule": "cosine", "warmup_epochs": 0.5,
        "weight_decay": 1e-4, "label_smoothing": 0.1, "mixup_alpha": 0.2, "augment": True, "random_erasing": 0.5,
        "early_stopping_patience": 1, "trunc_trainset_to": 64, "use_batchnorm_after_conv_layers": False,
    })
    result = train(config, data_dir, tmp_path / "run", verbose=0)
    # A learning rate of 1e-12 (and no batch-norm statistics to drift) cannot improve PublicTest: patience 1
    # stops after epoch 2.
    assert result.stopped_early and result.epochs_run == 2 and result.best_epoch == 1
    assert all(np.isfinite(result.history["loss"]))
    assert result.model_path.is_file()


def test_batches_depend_only_on_seed_epoch_and_index(data_dir):
    from data.batches import batch_generator
    from data.splits import load_split
    from parameters import Config

    train_data = load_split(data_dir, "Training", "landmarks")
    config = Config().with_overrides({"epochs": 2, "batch_size": 40, "augment": True, "feature_set": "landmarks"})
    first = list(batch_generator(train_data, 3, config))
    again = list(batch_generator(train_data, 3, config))
    later = list(batch_generator(train_data, 3, config, initial_epoch=1))
    assert len(first) == 6 and [len(y) for _, y in first[:3]] == [40, 40, 16]
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x1[0], x2[0])
        np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(later[0][0][1], first[3][0][1])
    assert not np.array_equal(first[0][1], first[3][1])  # epochs are shuffled differently


def test_svm_baseline_through_main(tmp_path, data_dir, capsys):
    out = tmp_path / "svm"
    rc = run_main("--data", data_dir, "--model", "svm", "--features", "landmarks", "--out", out, "--evaluate",
                  "--verbose", "0", "--svm-kernel", "linear")
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # Class c's landmarks are shifted by 4c pixels: a linear SVM separates the classes.
    assert metrics["public_test_accuracy"] > 0.9 and (out / "model.meta.json").is_file()
    assert run_main("--data", data_dir, "--model", "svm", "--features", "raw", "--out", tmp_path / "r") == 1
    assert "feature vector" in capsys.readouterr().err


@pytest.mark.parametrize("feature_set", ["landmarks_hog", "landmarks_hog_windows"])
def test_mirrored_hog_features_are_recomputed_from_the_mirrored_face(feature_set):
    from data.augment import flip_features, flip_images, flip_landmarks
    from data.features import assemble_features
    from data.hog import hog_features

    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (3, 48, 48)).astype(np.uint8)
    landmarks = rng.uniform(0, 47, (3, 68, 2)).astype(np.float32)
    windows = feature_set == "landmarks_hog_windows"
    hog = hog_features(images, plain=not windows, windows=windows)
    features = assemble_features(feature_set, landmarks=landmarks, **hog)
    flipped = flip_images(images)
    mirrored = flip_features(features, feature_set, 48, flipped)
    expected_hog = hog_features(flipped, plain=not windows, windows=windows)
    expected = assemble_features(feature_set, landmarks=flip_landmarks(landmarks), **expected_hog)
    np.testing.assert_allclose(mirrored, expected, atol=1e-6)
    assert not np.allclose(mirrored[:, 136:], features[:, 136:])  # HOG really changed with the flip
    np.testing.assert_allclose(flip_features(mirrored, feature_set, 48, images), features, atol=1e-5)  # involution
    with pytest.raises(ValueError, match="mirrored images"):
        flip_features(features, feature_set)


def test_tta_averages_the_mirrored_face_and_landmarks():
    from data.augment import flip_landmarks
    from inference.evaluation import evaluate

    class Recorder:
        """Stands in for a model: remembers its inputs, returns fixed probabilities."""

        def __init__(self):
            self.calls = []

        def predict(self, inputs, batch_size=None, verbose=0):
            self.calls.append(inputs)
            n = len(inputs[0])
            return np.tile([0.6, 0.4], (n, 1)) if len(self.calls) == 1 else np.tile([0.0, 1.0], (n, 1))

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (4, 48, 48)).astype(np.uint8)
    landmarks = rng.uniform(0, 47, (4, 68, 2)).astype(np.float32)
    model = Recorder()
    meta = {"class_names": ["x", "y"], "feature_set": "landmarks"}
    result = evaluate(model, meta, images, np.array([1, 1, 1, 0]), landmarks.reshape(4, -1), tta=True)
    assert result["tta"] and result["accuracy"] == 0.75  # mean (0.3, 0.7) -> class y everywhere
    mirrored_images, mirrored_features = model.calls[1]
    np.testing.assert_array_equal(mirrored_images[..., 0], images[:, :, ::-1])
    np.testing.assert_allclose(mirrored_features, flip_landmarks(landmarks).reshape(4, -1))
    assert result["confusion_matrix"] == [[0, 1], [0, 3]]


@pytest.mark.parametrize("feature_set", ["landmarks_hog", "landmarks_hog_windows"])
def test_augmented_hog_features_describe_the_augmented_image(data_dir, feature_set):
    """With --augment, HOG is recomputed from the warped/erased faces and landmarks move with them."""
    from data.batches import batch_generator
    from data.features import assemble_features
    from data.hog import hog_features
    from data.splits import load_split
    from parameters import Config

    train_data = load_split(data_dir, "Training", feature_set)
    config = Config().with_overrides({"epochs": 1, "batch_size": 32, "augment": True, "random_erasing": 0.5,
                                      "feature_set": feature_set})
    (images, features), _ = next(batch_generator(train_data, 3, config))
    images = images[..., 0]
    assert not np.allclose(images, train_data.images[:32])  # the faces were warped
    plain, windows = feature_set == "landmarks_hog", feature_set == "landmarks_hog_windows"
    expected = assemble_features(feature_set, features[:, :136], **hog_features(images, plain=plain, windows=windows))
    np.testing.assert_allclose(features, expected, atol=1e-6)
    # the stored HOG (random numbers here) is not what the batch carries: it was recomputed
    assert not np.allclose(features[:, 136:], train_data.features[:32, 136:], atol=0.05)


@pytest.mark.slow
def test_init_from_starts_from_saved_weights_and_checks_compatibility(trained_run, data_dir, tmp_path, capsys):
    import keras

    from parameters import Config
    from training.trainer import train

    base = {"model": "A", "feature_set": "landmarks_hog_windows", "epochs": 1, "batch_size": 32,
            "learning_rate": 1e-12, "schedule": "cosine", "init_from": str(trained_run / "model.keras")}
    result = train(Config().with_overrides(base), data_dir, tmp_path / "ft", verbose=0)
    # learning rate 1e-12: the kernels stay those of the source model (batch-norm statistics aside)
    source = keras.saving.load_model(trained_run / "model.keras", safe_mode=True, compile=False)
    tuned = keras.saving.load_model(result.model_path, safe_mode=True, compile=False)
    kernels = [(a, b) for a, b in zip(source.get_weights(), tuned.get_weights(), strict=True) if a.ndim >= 2]
    assert len(kernels) >= 3
    for theirs, ours in kernels:
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
    rc = run_main("--data", data_dir, "--model", "B", "--features", "landmarks_hog_windows", "--epochs", "1",
                  "--init-from", trained_run / "model.keras", "--out", tmp_path / "bad", "--verbose", "0")
    assert rc == 1 and "--init-from" in capsys.readouterr().err


@pytest.mark.slow
def test_distillation_mixes_flip_averaged_teacher_probabilities_into_targets(trained_run, data_dir, tmp_path, capsys):
    import keras

    from data.batches import batch_generator
    from data.splits import load_split
    from parameters import Config
    from training.run import TrainingError
    from training.teacher import make_teacher

    teacher_dir = tmp_path / "teacher"
    assert run_main("--data", data_dir, "--model", "fernet", "--width", "4", "--features", "raw", "--epochs", "1",
                    "--batch-size", "32", "--out", teacher_dir, "--verbose", "0") == 0
    path = str(teacher_dir / "model.keras")
    config = Config().with_overrides({"feature_set": "raw", "epochs": 1, "batch_size": 32, "augment": True,
                                      "teacher": path, "distill_weight": 0.25})
    names = json.loads((teacher_dir / "model.meta.json").read_text())["class_names"]
    teacher = make_teacher(path, config, names)
    train_data = load_split(data_dir, "Training", "raw")
    plain = next(batch_generator(train_data, 3, config))
    images, targets = next(batch_generator(train_data, 3, config, teacher=teacher))
    np.testing.assert_array_equal(images, plain[0])
    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    expected = 0.5 * (model.predict(images, verbose=0) + model.predict(images[:, :, ::-1], verbose=0))
    np.testing.assert_allclose(targets, 0.75 * plain[1] + 0.25 * expected, atol=1e-5)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-5)
    # a pixel model teaches a landmark/HOG model from the images alone
    hog_config = config.with_overrides({"feature_set": "landmarks_hog_windows"})
    hog_data = load_split(data_dir, "Training", "landmarks_hog_windows")
    (hog_images, _), hog_targets = next(batch_generator(hog_data, 3, hog_config,
                                                        teacher=make_teacher(path, hog_config, names)))
    hog_plain = next(batch_generator(hog_data, 3, hog_config))[1]
    expected = 0.5 * (model.predict(hog_images, verbose=0) + model.predict(hog_images[:, :, ::-1], verbose=0))
    np.testing.assert_allclose(hog_targets, 0.75 * hog_plain + 0.25 * expected, atol=1e-5)
    # --teacher-tta ten-crop: the teacher averages the ten views of each augmented face
    from data.augment import ten_crop_views

    ten_config = config.with_overrides({"teacher_tta": "ten-crop"})
    _, ten_targets = next(batch_generator(train_data, 3, ten_config, teacher=make_teacher(path, ten_config, names)))
    expected = np.mean([model.predict(v[..., None], verbose=0) for v in ten_crop_views(images[..., 0])], axis=0)
    np.testing.assert_allclose(ten_targets, 0.75 * plain[1] + 0.25 * expected, atol=1e-5)
    with pytest.raises(TrainingError, match="ten-crop needs a raw-pixel teacher"):
        make_teacher(str(trained_run / "model.keras"), ten_config.with_overrides(
            {"feature_set": json.loads((trained_run / "model.meta.json").read_text())["feature_set"]}),
            json.loads((trained_run / "model.meta.json").read_text())["class_names"])
    # through train.py, and a teacher of another feature set is refused by name
    assert run_main("--data", data_dir, "--model", "fernet", "--width", "4", "--features", "raw", "--epochs", "1",
                    "--batch-size", "32", "--teacher", path, "--out", tmp_path / "student", "--verbose", "2") == 0
    assert "distilling from" in capsys.readouterr().out
    assert run_main("--data", data_dir, "--model", "fernet", "--width", "4", "--features", "raw", "--epochs", "1",
                    "--teacher", trained_run / "model.keras", "--out", tmp_path / "bad", "--verbose", "0") == 1
    err = capsys.readouterr().err
    assert "--teacher" in err and "feature_set" in err and not (tmp_path / "bad").exists()


def test_branch_ablation_silences_one_branch_at_a_time(trained_run, data_dir, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    import branch_ablation

    assert branch_ablation.main(["--data", str(data_dir), str(trained_run / "model.keras")]) == 0
    row = capsys.readouterr().out.strip().splitlines()[-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "landmarks_hog_windows" and len(cells) == 5
    assert all(c.endswith(" %") and 0 <= float(c[:-2]) <= 100 for c in cells[2:])
    public = json.loads((trained_run / "metrics.json").read_text())["public_test_accuracy"]
    assert float(cells[2][:-2]) == pytest.approx(100 * public, abs=0.051)  # "as is" is the model's own accuracy


@pytest.mark.slow
def test_gradient_norm_reports_the_feature_branch_share(data_dir, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    import gradient_norm

    from models import build_model

    model = build_model("A", 3, 208)
    shapes = [tuple(v.shape) for v in gradient_norm.feature_branch_variables(model)]
    assert shapes == [(208, 1024), (1024,), (1024, 40), (40,)]  # the feature branch's FC 1024 -> FC 40
    assert gradient_norm.main(["--data", str(data_dir), "--model", "A", "--features", "landmarks",
                               "--batches", "1", "--batch-size", "8"]) == 0
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in capsys.readouterr().out.splitlines()[-2:]]
    assert [r[0] for r in rows] == ["standardised", "unscaled (2016)"]
    norms, scales, shares = ([float(r[i].split()[0]) for r in rows] for i in (1, 2, 3))
    assert all(n > 0 for n in norms) and all(0 < s <= 1 for s in scales) and all(0 <= s <= 1 for s in shares)
    assert all(abs(s - min(1.0, 5.0 / n)) < 0.01 for s, n in zip(scales, norms, strict=True))  # clipping at 5.0
    assert shares[1] > shares[0]  # landmark coordinates up to 48 dominate the unscaled gradient
    assert gradient_norm.main(["--data", str(data_dir), "--model", "A", "--features", "landmarks",
                               "--batches", "1", "--batch-size", "8", "--initializer", "tflearn"]) == 0
    out = capsys.readouterr().out
    assert "tflearn initialisation" in out
    tflearn_norms = [float(line.strip("|").split("|")[1].split()[0]) for line in out.splitlines()[-2:]]
    # tflearn's small truncated-normal FC weights (stddev 0.02) give far smaller gradients than Glorot's
    assert all(t < k for t, k in zip(tflearn_norms, norms, strict=True))


def import_soup():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    import soup

    return soup


def test_recalibrate_batchnorm_averages_batch_statistics():
    import keras

    recalibrate_batchnorm = import_soup().recalibrate_batchnorm

    inputs = keras.Input((48, 48, 1))
    model = keras.Model(inputs, keras.layers.BatchNormalization(momentum=0.9)(inputs))
    images = np.random.default_rng(0).uniform(0, 255, (64, 48, 48)).astype(np.float32)
    assert recalibrate_batchnorm(model, images, None, batch_size=32) == 1
    layer = model.layers[-1]
    # two equal batches: the moving mean is the mean of all pixels, the variance the mean of the batch variances
    order = np.sort(np.random.default_rng(0).permutation(64)[:32])
    rest = np.setdiff1d(np.arange(64), order)
    np.testing.assert_allclose(float(layer.moving_mean.numpy()[0]), images.mean(), rtol=1e-4)
    expected_var = 0.5 * (images[order].var() + images[rest].var())
    np.testing.assert_allclose(float(layer.moving_variance.numpy()[0]), expected_var, rtol=1e-3)
    assert layer.momentum == 0.9


@pytest.mark.slow
def test_soup_averages_accepted_models_and_refuses_mixed_architectures(trained_run, data_dir, tmp_path, capsys):
    from models.io import load_model

    soup = import_soup()

    paths = []
    for seed in (1, 2):
        out = tmp_path / f"fernet{seed}"
        assert run_main("--data", data_dir, "--model", "fernet", "--width", "4", "--features", "raw", "--epochs", "1",
                        "--batch-size", "32", "--out", out, "--verbose", "0", "--seed", str(seed)) == 0
        paths.append(out / "model.keras")
    # a model and its copy average to themselves, so greedy keeps the best model's copy (tried right after it: the
    # sort is stable); the result is the mean of what was kept
    ingredients = []
    for k, path in enumerate(paths):
        twin = tmp_path / f"twin{k}.keras"
        twin.write_bytes(path.read_bytes())
        (tmp_path / f"twin{k}.meta.json").write_text((path.parent / "model.meta.json").read_text())
        ingredients += [path, twin]
    result = soup.greedy_soup(ingredients, data_dir, recalibrate=False, verbose=0)
    assert [r["accepted"] for r in result.ingredients[:2]] == [True, True]
    assert Path(result.ingredients[1]["path"]).name.startswith("twin")
    kept = result.metadata["soup"]["ingredients"]
    assert len(kept) >= 2
    assert result.public_test_accuracy == max(r["tried"] for r in result.ingredients if r["accepted"])
    kernels = [load_model(p)[0].get_weights() for p in kept]
    for k, ours in enumerate(result.model.get_weights()):
        np.testing.assert_allclose(ours, np.mean([w[k] for w in kernels], axis=0), atol=1e-6)
    # through experiments/soup.py with batch-norm recalibration and evaluation
    out = tmp_path / "soup"
    assert soup.main([*map(str, paths), "--data", str(data_dir), "--out", str(out), "--evaluate",
                      "--verbose", "0"]) == 0
    assert "soup of" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    soup_meta = json.loads((out / "model.meta.json").read_text())["soup"]
    assert 0 <= metrics["private_test_accuracy"] <= 1 and soup_meta["batchnorm_recalibrated_on"] == "Training"
    assert json.loads((out / "soup.json").read_text()) == soup_meta
    assert abs(metrics["public_test_accuracy"] - soup_meta["public_test_accuracy"]) < 1e-9
    # another architecture, or a single model, is refused by name
    assert soup.main([str(paths[0]), str(trained_run / "model.keras"), "--data", str(data_dir), "--out",
                      str(tmp_path / "bad"), "--verbose", "0"]) == 1
    assert "one architecture" in capsys.readouterr().err
    assert soup.main([str(paths[0]), "--data", str(data_dir), "--out", str(tmp_path / "bad"), "--verbose", "0"]) == 1
    assert "at least two models" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "model.keras").exists()


def test_augmented_recalibration_pass_is_the_runs_own_first_epoch(trained_run, data_dir):
    """soup.py --recalibrate-on augmented: the faces batch-norm statistics are gathered on are exactly what the run's
    batch_generator fed its first epoch (its seed and augmentation), every Training face once."""
    from data.batches import batch_generator
    from data.splits import load_split
    from parameters import Config

    meta = json.loads((trained_run / "model.meta.json").read_text())
    config = Config.from_saved(meta["config"]).with_overrides({"epochs": 1, "augment": True, "photometric": 0.5})
    meta = {**meta, "config": config.to_dict()}
    training = load_split(data_dir, "Training", config.dataset.feature_set, n_classes=3)
    images, features = import_soup().augmented_pass(training, 3, meta)
    fed = [inputs for inputs, _ in batch_generator(training, 3, config)]
    first = [x[0] if isinstance(x, tuple) else x for x in fed]
    np.testing.assert_array_equal(images, np.concatenate(first))
    assert len(images) == len(training.labels) and (features is None) == (training.features is None)
    clean = training.images.astype(np.float32)[..., None]
    assert not np.allclose(np.sort(images.ravel()), np.sort(clean.ravel()))  # degraded, not the faces as they are


def test_a_published_peer_teaches_through_its_own_input_side_and_scaling(tmp_path, capsys):
    """A Keras 2 style .hdf5 peer (64x64 input, x / 255 then (x - 0.5) * 2) as a teacher: it sees each 48x48 face
    resized to its side, mirrored too; one with other classes, or a missing file, is a TrainingError."""
    import cv2
    import keras

    from parameters import EMOTIONS, Config
    from training.run import TrainingError
    from training.teacher import make_teacher

    inputs = keras.Input((64, 64, 1))
    x = keras.layers.Conv2D(3, 5, strides=4, activation="relu")(inputs)
    outputs = keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(x))
    peer = keras.Model(inputs, outputs)
    path = tmp_path / "peer.hdf5"
    peer.save(path)
    config = Config().with_overrides({"feature_set": "raw"})
    teacher = make_teacher(str(path), config, list(EMOTIONS))
    faces = np.random.default_rng(0).uniform(0, 255, (5, 48, 48)).astype(np.float32)
    got = teacher(faces, None)

    def expected(batch):
        big = np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_LINEAR) for f in batch])
        return peer.predict(((big / 255.0 - 0.5) * 2.0)[..., None], verbose=0)

    np.testing.assert_allclose(got, 0.5 * (expected(faces) + expected(faces[:, :, ::-1])), atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    with pytest.raises(TrainingError, match="FER2013's 7 classes"):
        make_teacher(str(path), config, ["a", "b", "c", "d", "e", "f", "g"])
    with pytest.raises(TrainingError, match="no such file"):
        make_teacher(str(tmp_path / "absent.h5"), config, list(EMOTIONS))
