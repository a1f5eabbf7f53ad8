"""User-facing errors and the exit codes every CLI shares.

Exit codes (the same for ``convert_fer2013.py``, ``train.py``, ``evaluate.py``, ``export.py``, ``predict.py``,
``predict_from_video.py``, ``optimize_hyperparams.py`` and ``serve.py``):

====  =====================================================================================================
0     success
1     an error the user can fix: unreadable or malformed file, unwritable output, bad value, model mismatch
2     a bad command line (argparse's own code: unknown flag, wrong type, missing argument)
3     ``predict.py`` only: it ran, but at least one image had no face
130   interrupted (Ctrl-C or SIGTERM); partial output is removed, and the message says how to resume
====  =====================================================================================================

Every error a user can cause subclasses :class:`UserError`; each ``main`` catches it and prints one line
(``error: <message>``) with no traceback. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NO_FACE = 3
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """An error caused by the user's input (file, flag value, folder) that the message tells them how to fix."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt like Ctrl-C, so one ``except KeyboardInterrupt`` (and
    every ``finally`` that removes partial output) handles both. The previous handler is restored on exit.

    Worker processes forked inside the block (multiprocessing pools) keep the default SIGTERM behaviour: the handler
    re-raises the signal there, so ``pool.terminate()`` still ends them at once and without a traceback.
    """
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return
    owner = os.getpid()

    def interrupt(signum, frame):
        if os.getpid() != owner:  # a forked worker: die as SIGTERM would have made it
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        _PENDING.set()
        raise KeyboardInterrupt

    _PENDING.clear()
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _PENDING.clear()


# Set by SIGTERM within sigterm_as_interrupt. The KeyboardInterrupt it raises can be lost when it lands inside a
# native call that swallows Python errors (JAX's array-to-numpy conversion does): long loops check
# interrupt_pending() at safe points (training.callbacks.EpochKeeper, before every batch) and raise it again.
_PENDING = threading.Event()


def interrupt_pending() -> bool:
    """True once SIGTERM arrived within :func:`sigterm_as_interrupt`."""
    return _PENDING.is_set()


def run_main(program: str, body: Callable[[], int], interrupted: str = "interrupted") -> int:
    """What every script's ``main`` does around its work: ``body()`` with SIGTERM as Ctrl-C; a UserError becomes
    one line ``PROGRAM: error: MESSAGE`` and exit 1, an interrupt ``PROGRAM: INTERRUPTED`` and exit 130. Any other
    exception is a bug and keeps its traceback. ``interrupted`` may be a callable giving the message (say, how to
    resume)."""
    try:
        with sigterm_as_interrupt():
            return body()
    except UserError as err:
        print(f"{program}: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        message = interrupted() if callable(interrupted) else interrupted
        print(f"{program}: {message}", file=sys.stderr)
        return EXIT_INTERRUPTED
