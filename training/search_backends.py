"""The parallel back ends of the search (Spark, MongoDB) and the hyperopt plumbing they share with the local one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from training.search_report import finished_trials
from training.search_space import SearchError

Objective = Callable[[dict[str, Any]], dict[str, Any]]


def plain_copy(trials: Any) -> Any:
    """A picklable ``hyperopt.Trials`` holding the finished trials of ``trials`` (e.g. SparkTrials) and its
    attachments; unfinished trials are left out so that a resumed search proposes them again."""
    from hyperopt import Trials

    copy = Trials()
    copy_into(finished_trials(trials), copy)
    for key in list(trials.attachments):
        copy.attachments[key] = trials.attachments[key]
    return copy


def copy_into(docs: list[dict[str, Any]], trials: Any) -> None:
    """Insert finished trial documents into ``trials`` (used to resume a Spark search from its trials file)."""
    if docs:
        trials.insert_trial_docs([dict(doc) for doc in docs])
    trials.refresh()  # also records their tids, so new trials get fresh ones


def progress_factory(on_update: Callable[[], None]) -> Callable[..., Any]:
    """A hyperopt ``show_progressbar`` callback whose ``update`` calls ``on_update``.

    hyperopt calls ``update`` from the driver's fmin loop after refreshing the trials, whenever trials finished;
    this is how Spark and Mongo searches print progress and persist after every evaluation.
    """

    class _Progress:
        postfix = ""

        def update(self, n: int) -> None:
            on_update()

    @contextlib.contextmanager
    def factory(initial: int, total: int) -> Iterator[_Progress]:
        yield _Progress()

    return factory


def parse_mongo(url: str) -> None:
    parts = url.split("://", 1)
    if len(parts) != 2 or parts[0] != "mongo" or not parts[1].endswith("/jobs") or parts[1].count("/") != 2:
        raise SearchError(f"--mongo {url!r}: expected mongo://host:port/db/jobs")


def fmin_quiet(fn: Objective, space: dict[str, Any], **kwargs: Any) -> None:
    """hyperopt.fmin without its return value, which raises AllTrialsFailed when every trial so far failed."""
    from hyperopt import fmin
    from hyperopt.exceptions import AllTrialsFailed

    with contextlib.suppress(AllTrialsFailed):
        fmin(fn, space, return_argmin=False, **kwargs)


def spark_trials(parallelism: int, previous: Any) -> Any:
    """SparkTrials on the session Spark is configured for (local[*] without a master), holding ``previous``'s
    finished trials. Executors must import this module: the repository root goes on their PYTHONPATH."""
    import shutil
    import sys

    try:
        from hyperopt import SparkTrials
        from pyspark.sql import SparkSession
    except ImportError as err:
        raise SearchError(f"--spark needs pyspark (pip install pyspark): {err}") from None
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        raise SearchError("--spark needs Java 17 or newer (Debian: apt-get install default-jre-headless)")
    repo_root = str(Path(__file__).resolve().parents[1])
    python_path = os.pathsep.join(p for p in (repo_root, os.environ.get("PYTHONPATH", "")) if p)
    # pyspark starts its Python workers with $PYSPARK_PYTHON (default: whatever "python3" is on PATH, which may
    # lack hyperopt and TensorFlow); default it to this interpreter. A cluster's own setting wins.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    spark = (
        SparkSession.builder.appName("fer-hyperopt")
        .config("spark.executorEnv.PYTHONPATH", python_path)
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    trials = SparkTrials(parallelism=parallelism, spark_session=spark)
    copy_into(finished_trials(previous), trials)
    for key in list(previous.attachments):
        trials.attachments[key] = previous.attachments[key]
    return trials
