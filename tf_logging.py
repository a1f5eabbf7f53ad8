"""Keep TensorFlow's start-up logging off the terminal unless the user asks for it (every CLI calls this).

Importing TensorFlow 2.21 writes 6-11 lines to stderr (oneDNN, "Could not find cuda drivers", cpu_feature_guard,
"failed call to cuInit") from C++ before absl's logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` cannot stop
them. :func:`quiet_tensorflow` therefore imports TensorFlow (and lets it probe for devices) with file descriptor 2
pointed at a temporary file, then puts stderr back; the captured text is printed only if the import fails. It also
sets ``TF_CPP_MIN_LOG_LEVEL=3`` for the rest of this process (and its children, e.g. Spark workers) and the
``tensorflow``/``absl`` Python loggers to ERROR. The user's shell environment is not touched.

    >>> quiet_tensorflow(verbose=args.verbose)   # doctest: +SKIP  (in main(), before the first TF/Keras import)

Under another Keras backend (``KERAS_BACKEND=jax`` or ``torch``, :func:`keras_backend`) nothing is imported: the
training path then runs without TensorFlow. Nothing happens on import of this module.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def _stderr_captured() -> Iterator[None]:
    """Point fd 2 (C++ writes there directly) at a temporary file; replay it to stderr if the block raises."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreters): nothing to hide
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        failed = False
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                sink.seek(0)
                sys.stderr.write(sink.read().decode("utf-8", errors="replace"))
                sys.stderr.flush()


def keras_backend() -> str:
    """The backend Keras will load, read as Keras reads it but without importing it: ``KERAS_BACKEND``, else the
    ``backend`` of ``$KERAS_HOME/keras.json`` (default ``~/.keras/keras.json``), else ``tensorflow``."""
    name = os.environ.get("KERAS_BACKEND")
    if name:
        return name
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    with contextlib.suppress(OSError, ValueError, AttributeError), open(os.path.join(home, "keras.json"),
                                                                        encoding="utf-8") as file:
        return str(json.load(file).get("backend") or "tensorflow")
    return "tensorflow"


def quiet_tensorflow(verbose: bool = False) -> None:
    """Import TensorFlow now, silently unless ``verbose`` (then its logging is left exactly as TF sets it).
    Under another Keras backend this does nothing."""
    if verbose or keras_backend() != "tensorflow":
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # this process and its children only
    if "tensorflow" not in sys.modules:
        with _stderr_captured():
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe ("failed call to cuInit") happens here
    import tensorflow as tf

    tf.get_logger().setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
