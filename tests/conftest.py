"""Shared test fixtures: tiny synthetic FER2013 csv files and the real data in ../shared.

* ``write_fer_csv(path, rows, ...)``: write rows ``(emotion, pixels (48, 48) uint8 or text, usage)`` as a FER2013
  csv (either header variant, optionally gzipped).
* ``synthetic_rows``: the rows of ``synthetic_csv`` (all seven classes in all three splits, random faces).
* ``synthetic_csv``: that csv written to tmp_path (``emotion,pixels,Usage``).
* ``write_converted(root, n, class_names, ...)``: a converted directory (convert_fer2013.py's layout) of learnable
  synthetic faces, for the training, evaluation and search tests; ``CLASSES`` its default classes.
* ``shared_dir`` / ``fer_csv_gz``: ``../shared`` and its ``data/fer2013.csv.gz``; the test skips with a reason when
  absent. Tests using them are marked ``shared`` automatically.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

# TF 2.21's oneDNN kernels corrupt memory (segfault / "malloc(): corrupted top size") when the first model a
# process fits is a fernet on this CPU (AVX512_BF16); with them off it trains. Set before any test imports TF.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = ROOT.parent / "shared"
SPLIT_NAMES = ("Training", "PublicTest", "PrivateTest")
HEADERS = {
    "fer2013": "emotion,pixels,Usage",  # Kaggle fer2013.csv
    "icml": "emotion, Usage, pixels",  # icml_face_data.csv (spaces after the commas)
}

Row = tuple[int | str, "np.ndarray | str", str]
CLASSES = ["Angry", "Happy", "Sad"]


def import_blocker(*packages: str) -> str:
    """Python source that makes importing any of ``packages`` (and their submodules) raise ImportError: prepended to
    a subprocess script, it stands for a machine where they are not installed."""
    return f"""
import sys

class BlockImports:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {packages!r}:
            raise ImportError(f"{{name}} is blocked in this test")
        return None

sys.meta_path.insert(0, BlockImports())
"""


def pixels_text(image: np.ndarray | str) -> str:
    """A (48, 48) uint8 image as the csv's space-separated pixel string (text passes through)."""
    if isinstance(image, str):
        return image
    return " ".join(map(str, np.asarray(image).ravel().tolist()))


def write_fer_csv(
    path: Path, rows: list[Row], *, header: str = "fer2013", compress: bool | None = None,
    before: Sequence[str] = (), after: Sequence[str] = (),
) -> Path:
    """Write a FER2013-format csv; ``header`` is a key of HEADERS or literal header text.

    ``before`` / ``after`` are raw lines placed before the header / after the rows (stray text, blank lines).
    Gzipped when ``compress`` is True, or when None and the name ends in ``.gz``. Returns ``path``.
    """
    header_text = HEADERS.get(header, header)
    names = [h.strip() for h in header_text.split(",")]
    sep = ", " if header == "icml" else ","
    lines = [*before, header_text]
    for emotion, image, usage in rows:
        values = {"emotion": str(emotion), "pixels": pixels_text(image), "Usage": usage}
        lines.append(sep.join(values.get(name, "") for name in names))
    lines.extend(after)
    text = "\n".join(lines) + "\n"
    if compress is None:
        compress = path.name.endswith(".gz")
    if compress:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


def make_rows(per_class: tuple[int, int, int] = (2, 1, 1), seed: int = 0) -> list[Row]:
    """Random faces: ``per_class[i]`` faces of every class 0..6 in split i, classes interleaved in file order."""
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    for usage, count in zip(SPLIT_NAMES, per_class, strict=True):
        for _ in range(count):
            for emotion in range(7):
                rows.append((emotion, rng.integers(0, 256, (48, 48), dtype=np.uint8), usage))
    return rows


def write_converted(
    root: Path,
    n: dict[str, int] | None = None,
    class_names: list[str] | tuple[str, ...] = CLASSES,
    *,
    hog: str | None = "windows",
    landmarks: bool = True,
    onehot: bool = True,
    seed: int = 0,
) -> Path:
    """A converted directory as docs/DESIGN.md lays it out, with learnable synthetic faces: each class has its own
    brightness pattern and landmark offset."""
    n = n or {"Training": 96, "PublicTest": 32, "PrivateTest": 32}
    rng = np.random.default_rng(seed)
    k = len(class_names)
    files = ["images", "labels"] + (["landmarks"] if landmarks else [])
    if hog == "windows":
        files += ["hog_features", "hog_plain"]
    elif hog == "plain":
        files += ["hog_features"]
    counts = {}
    for split, size in n.items():
        folder = root / split
        folder.mkdir(parents=True)
        labels = np.arange(size) % k
        rng.shuffle(labels)
        images = rng.integers(0, 60, (size, 48, 48))
        for c in range(k):  # class c: a bright horizontal band at rows 8c..8c+8
            images[labels == c, 8 * c : 8 * c + 8, :] += 150
        np.save(folder / "images.npy", images.astype(np.uint8))
        np.save(folder / "labels.npy", np.eye(k, dtype=np.float32)[labels] if onehot else labels.astype(np.int64))
        if landmarks:
            points = rng.uniform(5, 42, (size, 68, 2)).astype(np.float32)
            np.save(folder / "landmarks.npy", points + 4 * labels[:, None, None].astype(np.float32))
        if hog == "windows":
            np.save(folder / "hog_features.npy", rng.random((size, 2592), dtype=np.float32))
            np.save(folder / "hog_plain.npy", rng.random((size, 72), dtype=np.float32))
        elif hog == "plain":
            np.save(folder / "hog_features.npy", rng.random((size, 72), dtype=np.float32))
        counts[split] = {name: int(np.sum(labels == i)) for i, name in enumerate(class_names)}
    from parameters import EMOTIONS

    expressions = [EMOTIONS.index(c) for c in class_names]
    meta = {
        "format_version": 1,
        "class_names": list(class_names),
        "expressions": expressions,
        "expression_mapping": {str(e): i for i, e in enumerate(expressions)},
        "onehot": onehot,
        "hog": hog,
        "files": files,
        "options": {},
        "counts": counts,
        "skipped_rows": [],
        "source": "synthetic",
        "source_sha256": "0" * 64,
        "versions": {},
    }
    (root / "meta.json").write_text(json.dumps(meta))
    return root


def save_tiny_model(path: Path, classes: list[str]) -> Path:
    """A small raw-pixel Keras CNN with the documented input contract, saved with metadata by models.io."""
    import keras
    from keras import layers

    from models.io import save_model

    keras.utils.set_random_seed(0)
    image = keras.Input((48, 48, 1), name="image")
    x = layers.Conv2D(4, 3, strides=2, activation="relu")(layers.Rescaling(1 / 255)(image))
    out = layers.Dense(len(classes), activation="softmax")(layers.GlobalAveragePooling2D()(x))
    metadata = {"model_name": "tiny", "class_names": classes, "feature_set": "raw", "feature_dim": 0}
    return save_model(keras.Model(image, out), path, metadata)


@pytest.fixture
def eager_tensorflow():
    """Run Keras' train/evaluate steps eagerly: on the few dozen faces of a test, tracing the step costs more than
    the step itself (a 1-epoch fernet trains in ~4 s instead of ~10). Training code is the same; the graph path is
    still tested by the tests without this fixture and by every ``train.py`` run in a subprocess."""
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


@pytest.fixture
def synthetic_rows() -> list[Row]:
    """The rows of ``synthetic_csv``: 2 / 1 / 1 faces per class in Training / PublicTest / PrivateTest (28)."""
    return make_rows()


@pytest.fixture
def synthetic_csv(tmp_path: Path, synthetic_rows: list[Row]) -> Path:
    """A tiny fer2013.csv with all seven classes in all three splits (rows: the ``synthetic_rows`` fixture)."""
    return write_fer_csv(tmp_path / "fer2013.csv", synthetic_rows)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the repository; skips the test when it is absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"needs the shared data directory {SHARED_DIR} (absent)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def fer_csv_gz(shared_dir: Path) -> Path:
    """``../shared/data/fer2013.csv.gz`` (35,887 rows; stream it, never copy it); skips when absent."""
    path = shared_dir / "data" / "fer2013.csv.gz"
    if not path.is_file():
        pytest.skip(f"needs {path} (absent)")
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that use the shared data carry the ``shared`` marker (``-m "not shared"`` deselects them)."""
    for item in items:
        if {"shared_dir", "fer_csv_gz"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.shared)
