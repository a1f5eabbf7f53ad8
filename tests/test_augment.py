"""Real-photo augmentation (data.augment.random_photometric / random_box_jitter) and its use in training batches."""

from __future__ import annotations

import numpy as np
import pytest

from data.augment import random_box_jitter, random_photometric


def _faces(n: int = 16, seed: int = 0) -> np.ndarray:
    """(n, 48, 48) float32 faces with structure (a gradient, a bright square) and some texture."""
    rng = np.random.default_rng(seed)
    faces = np.tile(np.linspace(20, 220, 48, dtype=np.float32), (n, 48, 1))
    faces[:, 16:32, 16:32] = 240.0
    return np.clip(faces + rng.normal(0, 10, faces.shape), 0, 255).astype(np.float32)


def test_photometric_is_deterministic_given_the_generator_and_keeps_shape_dtype_range():
    faces = _faces()
    first = random_photometric(faces, np.random.default_rng(7), 0.5)
    again = random_photometric(faces, np.random.default_rng(7), 0.5)
    other = random_photometric(faces, np.random.default_rng(8), 0.5)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.shape == faces.shape and first.dtype == np.float32
    assert first.min() >= 0.0 and first.max() <= 255.0
    assert not np.shares_memory(first, faces)


def test_probability_zero_is_the_identity_and_one_changes_every_face():
    faces = _faces()
    np.testing.assert_array_equal(random_photometric(faces, np.random.default_rng(0), 0.0), faces)
    np.testing.assert_array_equal(random_box_jitter(faces, np.random.default_rng(0), 0.0), faces)
    changed = random_photometric(faces, np.random.default_rng(0), 1.0)
    assert (np.abs(changed - faces).mean(axis=(1, 2)) > 1.0).all()


def test_every_face_draws_the_same_numbers_so_one_face_does_not_change_the_others():
    # the draws do not depend on which faces were hit: the first 8 faces of a batch of 16 get the same treatment
    # as in a batch of 16 where the last 8 differ
    faces = _faces()
    other = faces.copy()
    other[8:] = 128.0
    a = random_photometric(faces, np.random.default_rng(3), 0.5)
    b = random_photometric(other, np.random.default_rng(3), 0.5)
    np.testing.assert_array_equal(a[:8], b[:8])


def test_box_jitter_zooms_out_about_the_shifted_centre():
    # a horizontal ramp x -> 4x: a crop twice the image's side puts 2 pixels in each output pixel (slope 8) and keeps
    # the centre's value
    ramp = np.tile(np.arange(48, dtype=np.float32) * 4.0, (1, 48, 1))
    out = random_box_jitter(ramp, np.random.default_rng(0), 1.0, max_shift=0.0, scale_range=(2.0, 2.0))
    np.testing.assert_allclose(np.diff(out[0, 24, 14:34]), 8.0, atol=1e-3)
    np.testing.assert_allclose(out[0, 24, 23:25].mean(), 94.0, atol=0.6)  # the ramp's value at the centre, 23.5 * 4
    # a shift of the box by +s moves the content by -s (zoom 1): the crop is centred s pixels to the right
    shifted = random_box_jitter(ramp, np.random.default_rng(0), 1.0, max_shift=0.1, scale_range=(1.0, 1.0))
    offset = (shifted[0, 24, 10:38] - ramp[0, 24, 10:38]).mean() / 4.0
    assert 0.0 < abs(offset) <= 4.8 + 1e-3
    np.testing.assert_allclose(np.diff(shifted[0, 24, 10:38]), 4.0, atol=1e-3)


def test_blur_and_jpeg_remove_fine_detail():
    # with only blur (and its downscaling variant) or JPEG possible, high-frequency energy drops on average
    rng = np.random.default_rng(0)
    checker = ((np.indices((48, 48)).sum(axis=0) % 2) * 200.0 + 20.0).astype(np.float32)
    faces = np.repeat(checker[None], 32, axis=0)
    out = random_photometric(faces, rng, 1.0)

    def detail(x):
        return np.abs(np.diff(x, axis=2)).mean()

    assert detail(out) < 0.7 * detail(faces)


def _tiny_split(n: int = 40):
    from data.splits import SplitData

    rng = np.random.default_rng(0)
    return SplitData(images=rng.integers(0, 256, (n, 48, 48)).astype(np.uint8), labels=rng.integers(0, 3, n),
                     features=None)


def test_batches_degrade_the_student_view_and_the_teacher_sees_the_clean_face():
    from data.batches import batch_generator
    from parameters import Config

    seen = []

    def teacher(images, features):
        seen.append(images.copy())
        return np.full((len(images), 3), 1 / 3, np.float32)

    base = Config().with_overrides({"feature_set": "raw", "epochs": 1, "batch_size": 16, "augment": True,
                                    "random_erasing": 0.3})
    clean = list(batch_generator(_tiny_split(), 3, base))
    photo = base.with_overrides({"photometric": 0.5})
    degraded = list(batch_generator(_tiny_split(), 3, photo, teacher=teacher))
    again = list(batch_generator(_tiny_split(), 3, photo))
    assert len(clean) == len(degraded) == len(seen) == 3
    for (plain, _), (student, targets), (repeat, _), teacher_view in zip(clean, degraded, again, seen, strict=True):
        np.testing.assert_array_equal(teacher_view[..., None], plain)  # the same geometric augmentation, erasing
        np.testing.assert_array_equal(student, repeat)  # deterministic given (seed, epoch, batch)
        assert not np.array_equal(student, plain)
        np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)


def test_photometric_refuses_landmark_and_hog_features(tmp_path):
    from parameters import Config
    from training.trainer import TrainingError, train

    config = Config().with_overrides({"feature_set": "landmarks", "photometric": 0.2, "epochs": 1})
    with pytest.raises(TrainingError, match="--photometric needs --features raw"):
        train(config, tmp_path / "missing", tmp_path / "run")
    assert not (tmp_path / "run").exists()
