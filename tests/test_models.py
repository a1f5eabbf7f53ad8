"""models/: registry, exact parameter counts of Models A and B, save/load with metadata, SVM, augmentation,
optimizers and schedules."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from models import available_models, build_model, keras_models
from parameters import FEATURE_SETS, Config

# Trainable parameters with 7 classes, BN after convs on, after FCs off (issue 3; the tflearn originals).
PARAMETER_COUNTS = [
    ("A", "raw", 19_118_407),
    ("A", "landmarks_hog_windows", 21_988_295),
    ("B", "raw", 42_325_895),
    ("B", "landmarks", 42_723_207),
    ("B", "landmarks_hog", 42_796_935),
    ("B", "landmarks_hog_windows", 45_377_415),
]


def trainable_parameters(model) -> int:
    return sum(int(np.prod(v.shape)) for v in model.trainable_weights)


def test_registry_lists_models_and_rejects_unknown_names():
    names = available_models()
    assert {"A", "B", "svm"} <= set(names)
    assert "svm" not in keras_models()
    with pytest.raises(ValueError, match=r"unknown model 'C'.*'A'.*'B'"):
        build_model("C", 7)
    with pytest.raises(ValueError, match="n_classes"):
        build_model("A", 1)


@pytest.mark.parametrize("feature_set", ["raw", "landmarks"])
@pytest.mark.parametrize("name", keras_models())
def test_every_keras_model_outputs_probabilities(name, feature_set):
    from training.loop import set_feature_statistics

    dim = FEATURE_SETS[feature_set]
    model = build_model(name, 5, dim, keep_prob=0.8)
    assert tuple(model.inputs[0].shape[1:]) == (48, 48, 1) and model.inputs[0].name == "image"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 48, 48, 1)).astype(np.float32)
    if dim:
        features = rng.uniform(0, 48, (4, dim)).astype(np.float32)
        set_feature_statistics(model, features.mean(0), features.var(0) + 1)
        out = model([images, features], training=False)
    else:
        out = model(images, training=False)
    out = np.asarray(out)
    assert out.shape == (4, 5)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    if dim:
        assert model.get_layer("feature_norm") is not None


@pytest.mark.parametrize(("name", "feature_set", "expected"), PARAMETER_COUNTS)
def test_parameter_counts_match_the_originals(name, feature_set, expected):
    model = build_model(name, 7, FEATURE_SETS[feature_set])
    assert trainable_parameters(model) == expected


def test_batchnorm_switches_change_the_architecture():
    plain = trainable_parameters(build_model("A", 7, 0, batchnorm_conv=False))
    assert plain == 19_118_407 - 2 * (64 + 64 + 128)  # gamma and beta of the three conv BNs
    with_fc_bn = trainable_parameters(build_model("A", 7, 136, batchnorm_fc=True))
    without = trainable_parameters(build_model("A", 7, 136))
    # where the 2016 code put them: image FC 1024, feature FC 1024 and FC 40 (not the image FC 40)
    assert with_fc_bn - without == 2 * (1024 + 1024 + 40)
    with_fc_bn = trainable_parameters(build_model("B", 7, 136, batchnorm_fc=True))
    without = trainable_parameters(build_model("B", 7, 136))
    assert with_fc_bn - without == 2 * (1024 + 1024 + 128)  # not after FC 4096 nor the image FC 128


@pytest.mark.parametrize(("feature_dim", "batchnorm"), [(0, True), (12, True), (0, False)])
def test_grown_fernet_predicts_exactly_what_the_smaller_one_did(feature_dim, batchnorm):
    from models.fernet import grow_fernet

    options = {"width": 4, "keep_prob": 0.8, "batchnorm_conv": batchnorm}
    small = build_model("fernet", 3, feature_dim, **options)
    rng = np.random.default_rng(0)
    small.set_weights([rng.normal(size=w.shape).astype(np.float32) * 0.3 + (1 if w.ndim == 1 else 0)
                       for w in small.get_weights()])  # not the initial values, so the copy is tested
    big = build_model("fernet", 3, feature_dim, last_stage_blocks=4, **options)
    assert trainable_parameters(big) - trainable_parameters(small) == 2 * (
        2 * (9 * 32 * 32 + (2 * 32 if batchnorm else 32)))  # two blocks of two 3x3 convolutions at 8 x width
    inputs = [rng.integers(0, 256, (5, 48, 48, 1)).astype(np.float32)]
    inputs = inputs + [rng.normal(size=(5, feature_dim)).astype(np.float32)] if feature_dim else inputs[0]
    before = np.asarray(big(inputs, training=False))
    grow_fernet(big, small.get_weights(), 2, 3, feature_dim, **options)
    after = np.asarray(big(inputs, training=False))
    np.testing.assert_allclose(after, np.asarray(small(inputs, training=False)), atol=1e-6)
    assert not np.allclose(before, after, atol=1e-3)  # the copy did something
    with pytest.raises(ValueError, match="cannot grow"):
        grow_fernet(small, big.get_weights(), 4, 3, feature_dim, **options)
    with pytest.raises(ValueError, match="do not fit"):
        grow_fernet(big, small.get_weights()[:-1], 2, 3, feature_dim, **options)


def test_dropout_rate_is_one_minus_keep_prob():
    import keras

    model = build_model("B", 7, 0, keep_prob=0.7)
    rates = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert rates == pytest.approx([0.3, 0.3])
    pools = [layer for layer in model.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert [(p.pool_size, p.strides, p.padding) for p in pools] == [((3, 3), (2, 2), "same")] * 3


def test_save_load_roundtrip_keeps_metadata_and_feature_statistics(tmp_path):
    from models.io import load_model, read_metadata, save_model, sidecar_path
    from training.loop import set_feature_statistics

    model = build_model("A", 3, 136, keep_prob=0.9)
    rng = np.random.default_rng(1)
    features = rng.normal(20, 5, (6, 136)).astype(np.float32)
    set_feature_statistics(model, features.mean(0), features.var(0))
    images = rng.integers(0, 256, (6, 48, 48, 1)).astype(np.float32)
    before = np.asarray(model([images, features], training=False))
    metadata = {"model_name": "A", "class_names": ["a", "b", "c"], "feature_set": "landmarks", "feature_dim": 136,
                "metrics": {"public_test_accuracy": np.float32(0.5)}}
    path = save_model(model, tmp_path / "m.keras", metadata)
    with zipfile.ZipFile(path) as archive:
        inside = json.loads(archive.read("fer_metadata.json"))
    assert inside["class_names"] == ["a", "b", "c"] and inside["format_version"] == 1
    assert json.loads(sidecar_path(path).read_text()) == inside
    loaded, meta = load_model(path)
    assert meta == inside == read_metadata(path)
    after = np.asarray(loaded([images, features], training=False))
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.get_layer("feature_norm").mean.numpy().ravel(), features.mean(0), rtol=1e-5)


def test_save_rejects_incomplete_metadata_and_load_names_bad_files(tmp_path):
    from models.io import ModelFileError, load_model, save_model

    with pytest.raises(ValueError, match="metadata lacks"):
        save_model(object(), tmp_path / "m.keras", {"model_name": "A"})
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model(tmp_path / "absent.keras")
    (tmp_path / "junk.keras").write_text("not a zip")
    with pytest.raises(ModelFileError, match="not a .keras zip"):
        load_model(tmp_path / "junk.keras")


def test_svm_pipeline_scores_sum_to_one_and_cover_absent_classes(tmp_path):
    from models.io import load_model, save_model
    from models.svm import SvmModel

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 2, 3], 20)  # class 1 absent from training
    features = rng.normal(0, 1, (60, 136)).astype(np.float32) + labels[:, None]
    pipeline = build_model("svm", 4, 136, svm_kernel="linear", svm_c=1.0)
    model = SvmModel(pipeline.fit(features, labels), 4)
    scores = model.predict([None, features])
    assert scores.shape == (60, 4)
    np.testing.assert_allclose(scores.sum(1), 1, atol=1e-5)
    assert np.mean(scores.argmax(1) == labels) > 0.9
    assert np.all(scores[:, 1] < 1e-6)
    path = save_model(model, tmp_path / "svm.skops", {"model_name": "svm", "class_names": list("abcd"),
                                                       "feature_set": "landmarks", "feature_dim": 136})
    loaded, meta = load_model(path)
    np.testing.assert_allclose(loaded(features), scores)
    with pytest.raises(ValueError, match="needs a feature vector"):
        build_model("svm", 4, 0)
    with pytest.raises(ValueError, match="svm_kernel"):
        build_model("svm", 4, 136, svm_kernel="cubic")


def test_flip_permutation_mirrors_the_68_points():
    from data.augment import FLIP_PERMUTATION, flip_landmarks

    assert sorted(FLIP_PERMUTATION) == list(range(68))
    np.testing.assert_array_equal(FLIP_PERMUTATION[FLIP_PERMUTATION], np.arange(68))  # an involution
    assert FLIP_PERMUTATION[36] == 45 and FLIP_PERMUTATION[48] == 54 and FLIP_PERMUTATION[30] == 30
    points = np.random.default_rng(0).uniform(0, 47, (2, 68, 2)).astype(np.float32)
    flipped = flip_landmarks(points)
    np.testing.assert_allclose(flipped[:, 45, 0], 47 - points[:, 36, 0])
    np.testing.assert_allclose(flip_landmarks(flipped), points, atol=1e-5)


def test_random_affine_moves_landmarks_with_the_image():
    from data.augment import FLIP_PERMUTATION, random_affine

    rng = np.random.default_rng(3)
    n = 16
    landmarks = np.tile(np.array([[12.0, 20.0]], np.float32), (n, 68, 1))
    landmarks[:, 36] = [30.0, 18.0]  # one distinct point, drawn as a bright blob
    images = np.zeros((n, 48, 48), np.float32)
    images[:, 17:20, 29:32] = 255.0
    out, moved = random_affine(images, rng, landmarks, max_shift=4, max_rotation=10, max_scale=0.05)
    flipped = 0
    for i in range(n):
        y, x = np.unravel_index(out[i].argmax(), out[i].shape)
        # The blob's point is index 36, or after a flip its mirror partner 45 (then 45 differs from the others).
        j = 36 if np.allclose(moved[i, 45], moved[i, 0]) else FLIP_PERMUTATION[36]
        flipped += j == 45
        assert abs(moved[i, j, 0] - x) <= 1.5 and abs(moved[i, j, 1] - y) <= 1.5
    assert 0 < flipped < n


def test_schedules_and_optimizers_follow_the_config():
    import keras

    from training.optim import make_optimizer, make_schedule

    cfg = Config()
    schedule = make_schedule(cfg, steps_per_epoch=10)
    assert float(schedule(50)) == pytest.approx(0.016 * 0.864, rel=1e-5)
    assert float(schedule(25)) == pytest.approx(0.016 * 0.864**0.5, rel=1e-5)  # continuous, not staircase
    cosine = make_schedule(cfg.with_overrides({"schedule": "cosine", "warmup_epochs": 1, "epochs": 4}), 10)
    assert float(cosine(0)) == pytest.approx(0.0) and float(cosine(10)) == pytest.approx(0.016, rel=1e-4)
    assert float(cosine(40)) < 1e-4
    onecycle = make_schedule(cfg.with_overrides({"schedule": "onecycle", "epochs": 10}), 10)
    assert float(onecycle(0)) == pytest.approx(0.016 / 25, rel=1e-4)
    assert float(onecycle(30)) == pytest.approx(0.016, rel=1e-3) and float(onecycle(100)) < 1e-5
    expected = {"momentum": (keras.optimizers.SGD, "momentum"), "adam": (keras.optimizers.Adam, "beta_1"),
                "rmsprop": (keras.optimizers.RMSprop, "rho"), "adadelta": (keras.optimizers.Adadelta, "rho"),
                "adagrad": (keras.optimizers.Adagrad, None)}
    for name, (cls, attribute) in expected.items():
        optimizer = make_optimizer(cfg.with_overrides({"optimizer": name, "optimizer_param": 0.9}), 10)
        assert isinstance(optimizer, cls)
        if attribute:
            assert getattr(optimizer, attribute) == pytest.approx(0.9)
    decayed = make_optimizer(cfg.with_overrides({"weight_decay": 1e-4}), 10)
    assert decayed.weight_decay == pytest.approx(1e-4)
    # clipped to global norm 5.0 by default, as tflearn's DNN (clip_gradients=5.0) in the 2016 code; 0 turns it off
    assert make_optimizer(cfg, 10).global_clipnorm == pytest.approx(5.0)
    assert make_optimizer(cfg.with_overrides({"global_clipnorm": 0.0}), 10).global_clipnorm is None
    clipped = make_optimizer(cfg.with_overrides({"global_clipnorm": 1.0}), 10)
    assert clipped.global_clipnorm == pytest.approx(1.0)
    with pytest.raises(ValueError, match="global_clipnorm"):
        cfg.with_overrides({"global_clipnorm": -1.0}).validate()


def test_tflearn_initializer_matches_the_2016_defaults():
    """conv: uniform within +-sqrt(3 / fan_in) (variance 1 / fan_in); dense: truncated normal, stddev 0.02."""
    import keras

    keras.utils.set_random_seed(0)
    model = build_model("B", 7, 136, initializer="tflearn")
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert len(convs) == 3 and len(dense) == 6  # FC 4096, 1024, image 128, feature 1024, 128, softmax
    for conv in convs:
        kernel = keras.ops.convert_to_numpy(conv.kernel)
        fan_in = int(np.prod(kernel.shape[:-1]))
        limit = np.sqrt(3.0 / fan_in)
        assert np.abs(kernel).max() <= limit
        assert np.abs(kernel).max() > 0.95 * limit  # uses the whole range
        assert kernel.var() == pytest.approx(1.0 / fan_in, rel=0.15)
    for layer in dense:
        kernel = keras.ops.convert_to_numpy(layer.kernel)
        assert np.abs(kernel).max() <= 0.04 + 1e-6  # truncated at two standard deviations
        # a normal N(0, 0.02) truncated at +-2 sigma has standard deviation 0.88 * 0.02
        assert kernel.std() == pytest.approx(0.88 * 0.02, rel=0.1)
    keras_default = build_model("B", 7, 136)
    first_fc = next(layer for layer in keras_default.layers if isinstance(layer, keras.layers.Dense))
    assert keras.ops.convert_to_numpy(first_fc.kernel).std() < 0.015  # Glorot: sqrt(2 / (9216 + 4096)) = 0.012
    with pytest.raises(ValueError, match="unknown initializer"):
        build_model("A", 7, 0, initializer="he")


def test_narrow_fernet_shortcuts_subsample_then_project_and_train_in_graph_mode(tmp_path):
    """Widths <= 8 build each stride-2 shortcut as 'keep every 2nd pixel, then a 1x1 convolution' (the same function
    as a strided 1x1 convolution), because TF 2.21's oneDNN kernels kill the process (SIGSEGV) training the strided
    1x1 convolution over so few channels; a graph-mode fit in a fresh process shows it now trains."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    import keras

    model = build_model("fernet", 7, width=8)
    assert "s1b1_proj_subsample" in [layer.name for layer in model.layers]
    assert "s1b1_proj_subsample" not in [layer.name for layer in build_model("fernet", 7, width=9).layers]
    probe = keras.Model(model.input, [model.get_layer("stem_relu").output, model.get_layer("s1b1_proj").output])
    stem, projected = probe(np.random.default_rng(0).uniform(0, 255, (2, 48, 48, 1)).astype("float32"))
    kernel = model.get_layer("s1b1_proj").get_weights()[0][0, 0]  # (8, 16)
    expected = np.einsum("nhwc,cd->nhwd", np.asarray(stem)[:, ::2, ::2, :], kernel)
    np.testing.assert_allclose(np.asarray(projected), expected, rtol=1e-5, atol=1e-5)

    script = textwrap.dedent("""
        import keras, numpy as np
        from models import build_model
        keras.utils.set_random_seed(0)
        model = build_model("fernet", 7, width=8)
        model.compile("sgd", "categorical_crossentropy")
        model.fit(np.random.rand(64, 48, 48, 1).astype("float32") * 255, np.eye(7)[np.arange(64) % 7],
                  batch_size=32, verbose=0)
        print("TRAINED")
    """)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "TRAINED" in done.stdout, (done.returncode, done.stderr[-2000:])
