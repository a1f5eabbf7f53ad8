"""SIGTERM handled like Ctrl-C, so the cleanup a command does on KeyboardInterrupt also runs when it is killed.

    with sigterm_as_interrupt():   # in main(): temporary folders are removed by the except/finally blocks
        convert(...)

Worker processes forked inside the block (multiprocessing pools) keep the default SIGTERM behaviour: the handler
re-raises the signal there, so ``pool.terminate()`` still ends them at once and without a traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt in this (main) process; the old handler is restored."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers can only be set there
        yield
        return
    owner = os.getpid()

    def handler(signum: int, frame) -> None:
        if os.getpid() != owner:  # a forked worker: die as SIGTERM would have made it
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
