"""Read hyperopt trials safely: a ``--trials-file`` pickle through a restricted unpickler, and a ``--mongo`` host
checked for reachability before hyperopt blocks on it.

A pickle can name any importable callable and have it called while it loads (``os.system``, ``builtins.eval``).
:func:`load_trials` admits only the classes a ``hyperopt.Trials`` written by ``training.search.save_trials``
holds: the ``Trials`` object itself, ``datetime`` values, and numpy scalars and arrays in a trial's result.
Anything else makes the file a :class:`TrialsFileError`, before a single foreign object is built.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from errors import UserError

# (module, name) pairs a Trials pickle may reference: numpy 2 (numpy._core) and numpy 1 (numpy.core) spellings.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("hyperopt.base", "Trials"),
        ("datetime", "datetime"),
        ("datetime", "date"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("collections", "OrderedDict"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        *((module, name) for module in ("numpy._core.multiarray", "numpy.core.multiarray")
          for name in ("scalar", "_reconstruct")),
        *((module, "_frombuffer") for module in ("numpy._core.numeric", "numpy.core.numeric")),
    }
)
MONGO_TIMEOUT_S = 5.0  # give up on an unreachable --mongo host after this long (pymongo's default is 30 s)


class TrialsFileError(UserError, ValueError):
    """A trials file that is unreadable, corrupt, or holds anything but hyperopt trials; or an unreachable Mongo."""


class _TrialsUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"refused {module}.{name}: a trials file holds only hyperopt Trials")
        return super().find_class(module, name)


def loads_trials(data: bytes, where: str = "trials") -> Any:
    """Unpickle ``data`` admitting only what a ``hyperopt.Trials`` holds, and check its structure."""
    from hyperopt import Trials

    try:
        trials = _TrialsUnpickler(io.BytesIO(data)).load()
    except Exception as err:  # a corrupt pickle raises almost anything (KeyError, IndexError, struct.error ...)
        raise TrialsFileError(f"{where}: not a readable hyperopt trials file ({type(err).__name__}: {err})") from None
    if not isinstance(trials, Trials):
        raise TrialsFileError(f"{where}: holds a {type(trials).__name__}, not hyperopt Trials")
    state = vars(trials)
    docs = state.get("_trials")
    if not isinstance(docs, list) or not isinstance(state.get("attachments"), dict):
        raise TrialsFileError(f"{where}: damaged hyperopt Trials (no trial list or attachments)")
    for doc in docs:
        if not isinstance(doc, dict) or not {"tid", "state", "misc", "result"} <= set(doc):
            raise TrialsFileError(f"{where}: damaged hyperopt Trials (a trial lacks tid, state, misc or result)")
        if not isinstance(doc["misc"], dict) or not isinstance(doc["result"], dict):
            raise TrialsFileError(f"{where}: damaged hyperopt Trials (trial {doc['tid']!r})")
    if not isinstance(state.get("_dynamic_trials", []), list):
        raise TrialsFileError(f"{where}: damaged hyperopt Trials (_dynamic_trials)")
    return trials


def load_trials(path: str | Path) -> Any:
    """The ``hyperopt.Trials`` in ``path`` (written by ``training.search.save_trials``); fresh Trials when absent."""
    from hyperopt import Trials

    path = Path(path)
    if not path.exists():
        return Trials()
    if path.is_dir():
        raise TrialsFileError(f"--trials-file {path}: is a directory")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TrialsFileError(f"--trials-file {path}: cannot read ({err.strerror or err})") from None
    return loads_trials(data, f"--trials-file {path}")


def check_mongo_reachable(url: str, timeout_s: float | None = None) -> None:
    """Ping the server of ``mongo://host:port/db/jobs``; TrialsFileError naming the host when it does not answer
    within ``timeout_s`` (default MONGO_TIMEOUT_S; hyperopt's MongoTrials would wait 30 s, then raise a pymongo
    traceback)."""
    timeout_s = MONGO_TIMEOUT_S if timeout_s is None else timeout_s
    import pymongo
    from pymongo.errors import PyMongoError

    address = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = address.rpartition(":") if ":" in address else (address, "", "27017")
    try:
        port_number = int(port)
    except ValueError:
        raise TrialsFileError(f"--mongo {url}: port {port!r} is not a number") from None
    timeout_ms = int(timeout_s * 1000)
    client = pymongo.MongoClient(
        host, port_number, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, connect=False
    )
    try:
        client.admin.command("ping")
    except PyMongoError as err:  # its message is a paragraph of topology details: name the host and the kind only
        raise TrialsFileError(
            f"--mongo {url}: no MongoDB answered at {host}:{port_number} within {timeout_s:g} s "
            f"({type(err).__name__}); check the host, the port and that mongod is running"
        ) from None
    finally:
        client.close()
