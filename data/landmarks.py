"""dlib's 68-point facial landmarks on 48x48 faces, in parallel over processes.

The 2016 repository ran the predictor on each FER2013 face with the fixed rectangle (1, 1, 47, 47) (the faces are
already cropped and aligned, so no detector is needed); we do the same. The predictor costs about a millisecond
per face and holds the GIL, so ``workers > 1`` uses a process pool in which every process loads the model once.

    >>> extractor = LandmarkExtractor()  # doctest: +SKIP
    >>> extractor.extract(images, workers=2, progress=True).shape  # doctest: +SKIP
    (n, 68, 2)
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

N_LANDMARKS = 68
FACE_RECT = (1, 1, 47, 47)  # left, top, right, bottom, as the original converter
_CHUNK = 128  # faces per task sent to a worker


def face_model_file(name: str, what: str) -> Path:
    """``name`` (e.g. ``mmod_human_face_detector.dat``) from the face-recognition-models package's ``models/``.

    The package is located without importing it: its ``__init__`` imports pkg_resources, 0.2 s of start-up.
    Raises FileNotFoundError naming ``what`` needs it when the package or the file is missing.
    """
    import importlib.util

    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{what} comes from the face-recognition-models package: pip install "
                                "face-recognition-models")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: face-recognition-models is installed but the model file is missing")
    return path


def default_shape_predictor_path() -> Path:
    """The ``shape_predictor_68_face_landmarks.dat`` shipped by the face-recognition-models package.

    Raises:
        FileNotFoundError: the package is not installed or lacks the file (with how to fix it).
    """
    return face_model_file("shape_predictor_68_face_landmarks.dat",
                           "the dlib 68-point model (or pass --shape-predictor PATH)")


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class LandmarkExtractor:
    """dlib's 68-point shape predictor applied to whole 48x48 faces.

    Args:
        path: the ``.dat`` model; None means ``default_shape_predictor_path()``.
    """

    def __init__(self, path: str | Path | None = None):
        import dlib

        self.path = Path(path) if path is not None else default_shape_predictor_path()
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such shape predictor file")
        try:
            self._predictor = dlib.shape_predictor(str(self.path))
        except RuntimeError as err:
            raise ValueError(f"{self.path}: not a dlib shape predictor ({err})") from err
        self._rect = dlib.rectangle(*FACE_RECT)

    def extract_one(self, image: np.ndarray) -> np.ndarray:
        """(48, 48) uint8 face -> (68, 2) float32 (x, y) pixel coordinates."""
        shape = self._predictor(np.ascontiguousarray(image, dtype=np.uint8), self._rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)

    def extract(self, images: np.ndarray, workers: int = 1, progress: bool = False) -> np.ndarray:
        """Landmarks of each face.

        Args:
            images: (n, 48, 48) uint8 faces (other dtypes are rounded and clipped to 0..255).
            workers: processes to use (each loads the model once); 1 runs here.
            progress: show a tqdm progress bar.

        Returns:
            (n, 68, 2) float32 (x, y) pixel coordinates in the 48x48 image.
        """
        images = as_uint8_faces(images)
        out = np.empty((len(images), N_LANDMARKS, 2), dtype=np.float32)
        pos = 0
        for part in parallel_chunks(_landmarks_task, images, workers=workers, progress=progress,
                                    initargs=(str(self.path),), extractor=self, desc="landmarks"):
            out[pos : pos + len(part)] = part
            pos += len(part)
        return out


def as_uint8_faces(images: np.ndarray) -> np.ndarray:
    """(n, 48, 48) or (48, 48) grey levels -> contiguous (n, 48, 48) uint8."""
    images = np.asarray(images)
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3:
        raise ValueError(f"expected (n, h, w) grey faces, got shape {images.shape}")
    if images.dtype != np.uint8:
        images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(images)


# ------------------------------------------------------------------------------------ process pool plumbing

_WORKER_EXTRACTOR: LandmarkExtractor | None = None


def _init_worker(path: str | None = None) -> None:
    """Pool initializer: load the predictor once per process (none when ``path`` is None).

    A forked worker inherits the parent's already loaded predictor (loading takes about a second). It ignores
    Ctrl-C (SIGINT goes to the whole process group): the parent gets KeyboardInterrupt and terminates the pool,
    instead of every worker printing a traceback."""
    global _WORKER_EXTRACTOR
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if path is None:
        _WORKER_EXTRACTOR = None
    elif _WORKER_EXTRACTOR is None or _WORKER_EXTRACTOR.path != Path(path):
        _WORKER_EXTRACTOR = LandmarkExtractor(path)


def worker_extractor() -> LandmarkExtractor:
    """The current process's extractor (set by the pool initializer, or by ``parallel_chunks`` when serial)."""
    if _WORKER_EXTRACTOR is None:
        raise RuntimeError("no landmark extractor in this process")
    return _WORKER_EXTRACTOR


def _landmarks_task(images: np.ndarray) -> np.ndarray:
    extractor = worker_extractor()
    return np.stack([extractor.extract_one(image) for image in images]) if len(images) else np.empty((0, 68, 2))


def parallel_chunks(
    task: Callable[[np.ndarray], Any],
    images: np.ndarray,
    *,
    workers: int = 1,
    progress: bool = False,
    initargs: tuple = (),
    extractor: LandmarkExtractor | None = None,
    desc: str = "faces",
    chunk: int = _CHUNK,
) -> Iterator[Any]:
    """Apply ``task`` to consecutive chunks of ``images`` and yield its results in order.

    With ``workers > 1`` the chunks go to a process pool whose processes each build one ``LandmarkExtractor``
    from ``initargs`` (the model path); with one worker they run here, with ``extractor`` (or one built from
    ``initargs``). A tqdm bar counts faces when ``progress``. ``task`` must be a module-level function.
    """
    global _WORKER_EXTRACTOR
    chunks = [images[i : i + chunk] for i in range(0, len(images), chunk)]
    if extractor is None and initargs and initargs[0] is not None:
        extractor = LandmarkExtractor(initargs[0])
    previous = _WORKER_EXTRACTOR
    _WORKER_EXTRACTOR = extractor  # used here when serial, inherited by forked workers otherwise
    bar = _progress_bar(len(images), desc) if progress else None
    try:
        if workers <= 1 or len(chunks) <= 1:
            results: Iterator[Any] = map(task, chunks)
            pool = None
        else:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("fork" if "fork" in methods else None)
            pool = context.Pool(min(workers, len(chunks)), initializer=_init_worker, initargs=initargs)
            results = pool.imap(task, chunks)
        try:
            for piece, result in zip(chunks, results, strict=True):
                if bar is not None:
                    bar.update(len(piece))
                yield result
        finally:
            if pool is not None:
                pool.terminate()  # also stops the workers when the consumer stops early or fails
                pool.join()
    finally:
        _WORKER_EXTRACTOR = previous
        if bar is not None:
            bar.close()


def _progress_bar(total: int, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="face", smoothing=0.1)
