"""dlib's frontal face detector, loaded from a file instead of rebuilt from dlib's embedded copy.

``dlib.get_frontal_face_detector()`` decodes the HOG detector compiled into dlib every time it is called: about
0.5 s on an idle core and 3 s on the shared 2-core machine, most of the start-up of ``predict.py`` once TensorFlow is
gone. The same detector saved by dlib's own serialisation loads in 2 ms. The bundled file was written by

    python -c "import dlib; dlib.get_frontal_face_detector().save('models/pretrained/frontal_face_detector.svm')"

(dlib 20.0.1; the frontal detector has not changed since dlib 18.x) and ``tests/test_backends.py`` checks that a fresh
save of dlib's detector is byte-identical to it. Without the file, dlib's embedded copy is used.
"""

from __future__ import annotations

from pathlib import Path

DETECTOR_FILE = Path(__file__).resolve().parents[1] / "models" / "pretrained" / "frontal_face_detector.svm"


def frontal_face_detector(path: Path = DETECTOR_FILE):
    """dlib's frontal face detector (an ``fhog_object_detector``): from ``path`` when it exists, else dlib's own."""
    import dlib

    if path.is_file():
        return dlib.fhog_object_detector(str(path))
    return dlib.get_frontal_face_detector()
