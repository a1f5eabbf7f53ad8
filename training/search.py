"""Hyperparameter search with hyperopt (TPE) over ``parameters.OptimizerSearchSpace``.

One trial = one call of ``training.trainer.train`` (the function ``train.py`` uses) on a config with the searched
values; the objective is its PublicTest accuracy (never PrivateTest), loss = -accuracy. Three back ends:

- local (default): trials run one after another in this process; the ``hyperopt.Trials`` are pickled to the trials
  file after every evaluation (tmp file + rename), so an interrupted search continues where it stopped;
- Spark (``spark=P``): ``hyperopt.SparkTrials`` runs P trials at a time; finished trials are copied into a plain
  ``Trials`` and pickled the same way, so a Spark search resumes too;
- MongoDB (``mongo="mongo://host:port/db/jobs"``): ``hyperopt.mongoexp.MongoTrials``; the database holds the trials
  and ``hyperopt-mongo-worker`` processes evaluate them. Workers unpickle :func:`objective` by reference, so this
  module must be importable there (run them with the repository on ``PYTHONPATH``) and ``data_dir`` must exist at the
  same path.

A trial that raises is recorded with ``status: fail`` and its error, and the search goes on.

    >>> space = build_space(OptimizerSearchSpace(optimizer=("momentum", "adam")))
    >>> sorted(k for k in space if k != FIXED_KEY)
    ['keep_prob', 'learning_rate', 'learning_rate_decay', 'optimizer', 'optimizer_param']
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import json
import math
import os
import pickle
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from errors import UserError
from parameters import Config, OptimizerSearchSpace
from training.trials_io import check_mongo_reachable, load_trials  # restricted unpickler; re-exported

# The searched names, in report order; each is a Hyperparams field and a field of OptimizerSearchSpace.
SEARCHED: tuple[str, ...] = ("learning_rate", "learning_rate_decay", "optimizer", "optimizer_param", "keep_prob")
# Key of the constant part of the space: where and how to train, identical for every trial. It travels inside the
# space so that the module-level objective needs nothing but its argument (Spark executors, Mongo workers).
FIXED_KEY = "fixed"
# trials.attachments key recording what a trials file was made with, checked on resume.
_SIGNATURE_KEY = "fer_search_signature"
CSV_COLUMNS: tuple[str, ...] = (
    "tid", "status", "public_test_accuracy", "loss", "time_s", *SEARCHED, "error", "trial_dir", "started",
)  # fmt: skip

Objective = Callable[[dict[str, Any]], dict[str, Any]]


class SearchError(UserError, ValueError):
    """A search that cannot start: bad space, mismatching trials file, bad back-end settings."""


# --------------------------------------------------------------------------------------------------- space


def build_space(search: OptimizerSearchSpace, fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    """hyperopt space: ``hp.uniform`` for the four ranges, ``hp.choice`` over the optimizers.

    ``fixed`` (data_dir, trials_dir, overrides) is carried unchanged to the objective under ``FIXED_KEY``.
    Raises SearchError naming the bad range or optimizer (from ``OptimizerSearchSpace.validate``).
    """
    from hyperopt import hp

    try:
        search.validate()
    except (ValueError, TypeError) as err:
        raise SearchError(str(err)) from None
    space: dict[str, Any] = {name: hp.uniform(name, *getattr(search, name)) for name in SEARCHED if name != "optimizer"}
    space["optimizer"] = hp.choice("optimizer", list(search.optimizer))
    space[FIXED_KEY] = dict(fixed or {})
    return space


# ----------------------------------------------------------------------------------------------- objective


def trial_name(params: dict[str, Any], overrides: dict[str, Any] | None = None, data_dir: str = "") -> str:
    """Folder name of a trial: a digest of everything that sets its training (same digest -> same config)."""
    text = json.dumps([params, overrides or {}, str(data_dir)], sort_keys=True, default=str)
    return "trial-" + hashlib.sha1(text.encode()).hexdigest()[:12]


def run_trial(
    params: dict[str, Any],
    *,
    data_dir: str | Path,
    trials_dir: str | Path,
    overrides: dict[str, Any] | None = None,
    verbose: int = 0,
    train_fn: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Train one config (``overrides`` then ``params`` applied to ``Config()``); return a hyperopt result dict.

    ``{'status': 'ok', 'loss': -acc, 'public_test_accuracy': acc, 'time_s', 'trial_dir', 'params'}``, or on any
    exception ``{'status': 'fail', 'error': 'Type: message', 'traceback', 'time_s', ...}`` so the search goes on.
    ``train_fn`` defaults to ``training.trainer.train``.
    """
    from hyperopt import STATUS_FAIL, STATUS_OK

    params = {k: (v.item() if hasattr(v, "item") else v) for k, v in params.items()}  # numpy scalars -> JSON
    trial_dir = Path(trials_dir) / trial_name(params, overrides, str(data_dir))
    result: dict[str, Any] = {"params": params, "trial_dir": str(trial_dir)}
    start = time.perf_counter()
    try:
        config = Config().with_overrides({**(overrides or {}), **params})
        config.validate()
        if train_fn is None:
            from training.trainer import train as train_fn
        # resume: a trial interrupted with the search continues from its checkpoint (kept with save_model); the
        # folder name digests the whole config, so a checkpoint found there is this very trial's.
        outcome = train_fn(config, Path(data_dir), trial_dir, resume=True, verbose=verbose)
        accuracy = float(outcome.best_public_accuracy)
        if not math.isfinite(accuracy):
            raise FloatingPointError(f"PublicTest accuracy is {accuracy}")
    except Exception as err:  # a failing trial must not end the search; its error goes into the trials
        result.update(
            status=STATUS_FAIL,
            error=f"{type(err).__name__}: {err}",
            traceback=traceback.format_exc(limit=20),
            time_s=time.perf_counter() - start,
        )
        return result
    result.update(status=STATUS_OK, loss=-accuracy, public_test_accuracy=accuracy, time_s=time.perf_counter() - start)
    return result


def objective(params: dict[str, Any]) -> dict[str, Any]:
    """The hyperopt objective: ``params`` is a point of :func:`build_space` (searched values + ``FIXED_KEY``).

    Module level and free of closures so that Spark executors and ``hyperopt-mongo-worker`` can import it.
    """
    params = dict(params)
    fixed = params.pop(FIXED_KEY, None) or {}
    if "data_dir" not in fixed or "trials_dir" not in fixed:
        raise SearchError(f"objective: the space's {FIXED_KEY!r} entry needs data_dir and trials_dir, got {fixed}")
    return run_trial(
        params,
        data_dir=fixed["data_dir"],
        trials_dir=fixed["trials_dir"],
        overrides=fixed.get("overrides"),
        verbose=int(fixed.get("verbose", 0)),
    )


# ------------------------------------------------------------------------------------------ trials on disk


def save_trials(trials: Any, path: str | Path) -> None:
    """Pickle ``trials`` to ``path`` atomically (tmp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as handle:
            pickle.dump(trials, handle, protocol=pickle.HIGHEST_PROTOCOL)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def finished_trials(trials: Any) -> list[dict[str, Any]]:
    """Trial documents whose evaluation ended (ok or failed), ordered by tid."""
    from hyperopt import JOB_STATE_DONE

    return sorted((t for t in trials.trials if t["state"] == JOB_STATE_DONE), key=lambda t: t["tid"])


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


# ------------------------------------------------------------------------------------------------ reports


def _status(doc: dict[str, Any]) -> str:
    return str((doc.get("result") or {}).get("status", "new"))


def trial_rows(trials: Any, space: dict[str, Any]) -> list[dict[str, Any]]:
    """One plain row per finished trial with the CSV_COLUMNS keys (choice indices mapped back to names)."""
    from hyperopt import space_eval

    rows = []
    for doc in finished_trials(trials):
        vals = {k: v[0] for k, v in doc["misc"]["vals"].items() if v}
        point = space_eval(space, vals)
        result = doc.get("result") or {}
        accuracy = result.get("public_test_accuracy")
        started = doc.get("book_time")
        rows.append(
            {
                "tid": doc["tid"],
                "status": _status(doc),
                "public_test_accuracy": accuracy,
                "loss": result.get("loss"),
                "time_s": result.get("time_s"),
                **{name: point.get(name) for name in SEARCHED},
                "error": result.get("error", ""),
                "trial_dir": result.get("trial_dir", ""),
                "started": started.isoformat(timespec="seconds") if isinstance(started, datetime) else "",
            }
        )
    return rows


def best_row(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The ok trial with the highest PublicTest accuracy (lowest tid on ties); None when none succeeded."""
    ok = [r for r in rows if r["status"] == "ok" and r["public_test_accuracy"] is not None]
    return max(ok, key=lambda r: (r["public_test_accuracy"], -r["tid"])) if ok else None


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_csv(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Every finished trial: tid, status, accuracy, loss, seconds, the searched values, error, folder, start."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS} for row in rows)
    os.replace(tmp, path)


def write_best(path: str | Path, best: dict[str, Any], *, base_params: dict[str, Any], info: dict[str, Any]) -> None:
    """``{"params": {...}, "public_test_accuracy": x, ...}``, the shape ``train.py --params`` reads.

    ``params`` = ``base_params`` (what every trial shared: model, feature set, batch size, --params file) plus the
    trial's searched values; the search's epochs and seed are kept under ``search`` only, not in ``params``.
    """
    document = {
        "params": {**base_params, **{name: best[name] for name in SEARCHED}},
        "public_test_accuracy": best["public_test_accuracy"],
        "trial": best["tid"],
        "trial_dir": best["trial_dir"],
        "search": info,
    }
    _atomic_write_text(Path(path), json.dumps(document, indent=2) + "\n")


def plot_trials(rows: list[dict[str, Any]], path: str | Path, search: OptimizerSearchSpace) -> None:
    """PNG: PublicTest accuracy per trial (with the running best), then accuracy against each searched value."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, renders with Agg

    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] != "ok"]
    fig = Figure(figsize=(15, 8), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    ax = axes[0]
    ax.scatter([r["tid"] for r in ok], [r["public_test_accuracy"] for r in ok], s=18, label="ok")
    if failed:
        ax.scatter([r["tid"] for r in failed], [0.0] * len(failed), marker="x", color="red", label="failed")
    best, running = -math.inf, []
    for r in ok:
        best = max(best, r["public_test_accuracy"])
        running.append((r["tid"], best))
    if running:
        ax.step(*zip(*running, strict=True), where="post", color="black", lw=1, label="best so far")
    ax.set(title="PublicTest accuracy per trial", xlabel="trial", ylabel="accuracy")
    ax.legend(loc="lower right", fontsize="small")
    for ax, name in zip(axes[1:], SEARCHED, strict=True):
        ys = [r["public_test_accuracy"] for r in ok]
        if name == "optimizer":
            choices = list(search.optimizer)
            xs = [choices.index(r[name]) if r[name] in choices else -1 for r in ok]
            ax.set_xticks(range(len(choices)), choices)
            ax.set_xlim(-0.5, len(choices) - 0.5)
        else:
            xs = [r[name] for r in ok]
            low, high = getattr(search, name)
            if low > 0 and high / low >= 100:
                ax.set_xscale("log")
            ax.set_xlim(low, high)
        ax.scatter(xs, ys, s=18, c=[r["tid"] for r in ok], cmap="viridis")
        ax.set(title=name, xlabel=name, ylabel="accuracy")
    fig.suptitle(f"{len(rows)} trials ({len(ok)} ok, {len(failed)} failed)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


# ------------------------------------------------------------------------------------------------- search


@dataclass(frozen=True)
class SearchResult:
    """What a search left: the trial rows (finished ones), the best row, and the files written."""

    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    best_path: Path | None
    csv_path: Path
    png_path: Path
    trials_file: Path | None
    new_trials: int


def report_paths(out: Path) -> tuple[Path, Path]:
    """CSV and PNG next to best.json: ``best.json`` -> ``best_trials.csv``, ``best_trials.png``."""
    return out.with_name(f"{out.stem}_trials.csv"), out.with_name(f"{out.stem}_trials.png")


def _signature(search: OptimizerSearchSpace, fixed: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps({"space": dataclasses.asdict(search), **fixed}))


def _check_signature(trials: Any, signature: dict[str, Any], where: str) -> None:
    """Refuse to continue trials made with another space or training setup (choice indices would mean others)."""
    try:
        stored = trials.attachments[_SIGNATURE_KEY]
    except KeyError:
        stored = None
    if stored is None:
        if len(trials.trials):
            raise SearchError(f"{where}: has trials but no record of the search that made them; use a new one")
        trials.attachments[_SIGNATURE_KEY] = json.dumps(signature, sort_keys=True).encode()
        return
    previous = json.loads(stored)
    if previous != signature:

        def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
            out: dict[str, Any] = {}
            for k, v in d.items():
                out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
            return out

        a, b = flat(previous), flat(signature)
        diffs = [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        raise SearchError(
            f"{where} was made by a different search ({'; '.join(diffs)}); "
            "rerun with the same settings to continue it, or give a new trials file"
        )


def _progress_factory(on_update: Callable[[], None]) -> Callable[..., Any]:
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


def _parse_mongo(url: str) -> None:
    parts = url.split("://", 1)
    if len(parts) != 2 or parts[0] != "mongo" or not parts[1].endswith("/jobs") or parts[1].count("/") != 2:
        raise SearchError(f"--mongo {url!r}: expected mongo://host:port/db/jobs")


def run_search(
    search: OptimizerSearchSpace,
    *,
    data_dir: str | Path,
    out: str | Path,
    max_evals: int,
    trials_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    base_params: dict[str, Any] | None = None,
    seed: int = 0,
    mongo: str | None = None,
    exp_key: str | None = None,
    spark: int | None = None,
    trials_dir: str | Path | None = None,
    verbose: int = 0,
    objective_fn: Objective | None = None,
    log: Callable[[str], None] = print,
) -> SearchResult:
    """Run (or continue) a TPE search until ``max_evals`` trials have finished; write best.json, CSV and PNG.

    overrides: flat Config fields applied to every trial (model, feature_set, epochs, batch_size, seed, ...).
    base_params: the part of them that belongs in best.json's ``params`` (see :func:`write_best`).
    trials_file: pickled Trials (local and Spark back ends; ignored by Mongo, whose database holds the trials).
    trials_dir: where trials train (default: ``<out's folder>/trials``); verbose: Keras verbosity in a trial.
    objective_fn: replaces :func:`objective` (tests); it receives the space's points, ``FIXED_KEY`` included.
    """
    import numpy as np
    from hyperopt import JOB_STATE_ERROR, tpe

    if max_evals < 1:
        raise SearchError(f"max_evals {max_evals} must be >= 1")
    if mongo and spark:
        raise SearchError("choose one back end: --mongo or --spark, not both")
    if spark is not None and spark < 1:
        raise SearchError(f"--spark {spark}: parallelism must be >= 1")
    if mongo:
        _parse_mongo(mongo)
        if not exp_key:
            raise SearchError("--mongo needs --exp-key NAME (the experiment the trials belong to)")
    out = Path(out)
    csv_path, png_path = report_paths(out)
    trials_file = Path(trials_file) if trials_file is not None and not mongo else None
    overrides = dict(overrides or {})
    fixed = {
        "data_dir": str(Path(data_dir).resolve()),
        "trials_dir": str(Path(trials_dir or out.parent / "trials").resolve()),
        "overrides": overrides,
        "verbose": verbose,
    }
    space = build_space(search, fixed)
    # what decides a trial's score; where it trains, its verbosity and whether it keeps its model may change
    signature = _signature(
        search,
        {"data_dir": fixed["data_dir"], "overrides": {k: v for k, v in overrides.items() if k != "save_model"}},
    )
    fn = objective_fn or objective

    if mongo:
        from hyperopt.mongoexp import MongoTrials

        check_mongo_reachable(mongo)
        trials = MongoTrials(mongo, exp_key=exp_key)
        where = f"{mongo} (exp_key {exp_key})"
    else:
        trials = load_trials(trials_file) if trials_file else None
        if trials is None:
            from hyperopt import Trials

            trials = Trials()
        where = str(trials_file) if trials_file else "trials"
    _check_signature(trials, signature, where)

    reported = {t["tid"] for t in finished_trials(trials)}
    initial = len(reported)
    if initial:
        log(f"continuing {where}: {initial} trial(s) done, {max(max_evals - initial, 0)} to go")

    def after_trials(current: Any) -> None:
        """Print the new finished trials, persist, and refresh the CSV and best.json."""
        done = finished_trials(current)
        new = [t for t in done if t["tid"] not in reported]
        for doc in getattr(current, "_dynamic_trials", []):  # Spark tasks that died before the objective returned
            if doc["state"] == JOB_STATE_ERROR and doc["tid"] not in reported:
                reported.add(doc["tid"])
                log(f"trial (tid {doc['tid']}) did not run: {doc['misc'].get('error')}; it will be proposed again")
        if not new:
            return
        if trials_file is not None:
            save_trials(plain_copy(current) if spark else current, trials_file)
        rows = trial_rows(current, space)
        new_tids = {t["tid"] for t in new}
        for line in progress_lines(rows, reported, new_tids, max_evals):
            log(line)
        reported.update(new_tids)
        _write_reports(rows, out, csv_path, None, base_params, _info(rows))

    def _info(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "n_trials": len(rows),
            "n_ok": sum(r["status"] == "ok" for r in rows),
            "max_evals": max_evals,
            "data_dir": fixed["data_dir"],
            "trials_file": str(trials_file) if trials_file else None,
            "mongo": mongo,
            "exp_key": exp_key,
            "space": dataclasses.asdict(search),
            "overrides": overrides,
            "seed": seed,
        }

    before = len(finished_trials(trials))
    if before < max_evals:
        if spark or mongo:
            if spark:
                trials = _spark_trials(spark, trials)
            _fmin(
                fn, space, algo=tpe.suggest, max_evals=max_evals, trials=trials, max_queue_len=spark or 1,
                rstate=np.random.default_rng([seed, before]), verbose=True,
                show_progressbar=_progress_factory(lambda: after_trials(trials)),
            )  # fmt: skip
        else:
            # One fmin call per trial, seeded by (seed, number of trials so far): an interrupted and resumed
            # search proposes exactly what an uninterrupted one would have.
            while len(finished_trials(trials)) < max_evals:
                n = len(trials.trials)
                _fmin(
                    fn, space, algo=tpe.suggest, max_evals=n + 1, trials=trials,
                    rstate=np.random.default_rng([seed, n]), show_progressbar=False, verbose=False,
                )  # fmt: skip
                if len(trials.trials) == n:
                    raise SearchError(f"hyperopt proposed no new trial after {n}")
                after_trials(trials)
        after_trials(trials)
    rows = trial_rows(trials, space)
    best = _write_reports(rows, out, csv_path, png_path, base_params, _info(rows), search=search)
    return SearchResult(
        rows=rows,
        best=best,
        best_path=out if best else None,
        csv_path=csv_path,
        png_path=png_path,
        trials_file=trials_file,
        new_trials=len(rows) - before,
    )


def _write_reports(
    rows: list[dict[str, Any]],
    out: Path,
    csv_path: Path,
    png_path: Path | None,
    base_params: dict[str, Any] | None,
    info: dict[str, Any],
    search: OptimizerSearchSpace | None = None,
) -> dict[str, Any] | None:
    write_csv(rows, csv_path)
    best = best_row(rows)
    if best is not None:
        write_best(out, best, base_params=dict(base_params or {}), info=info)
    if png_path is not None and search is not None:
        plot_trials(rows, png_path, search)
    return best


def _fmin(fn: Objective, space: dict[str, Any], **kwargs: Any) -> None:
    """hyperopt.fmin without its return value, which raises AllTrialsFailed when every trial so far failed."""
    from hyperopt import fmin
    from hyperopt.exceptions import AllTrialsFailed

    with contextlib.suppress(AllTrialsFailed):
        fmin(fn, space, return_argmin=False, **kwargs)


def progress_lines(rows: list[dict[str, Any]], reported: set[int], new_tids: set[int], total: int) -> list[str]:
    """One line per newly finished trial, numbered in order of completion: parallel (Spark, Mongo) trials can
    finish out of tid order, so trial k is the k-th to finish, and "best so far" covers the trials finished by then.
    ``reported``: tids already printed; ``new_tids``: those to print now."""
    earlier = [r for r in rows if r["tid"] in reported and r["tid"] not in new_tids]
    ok = [r["public_test_accuracy"] for r in earlier if r["status"] == "ok"]
    best_so_far = max(ok) if ok else None
    lines = []
    for k, row in enumerate((r for r in rows if r["tid"] in new_tids), start=len(earlier) + 1):
        if row["status"] == "ok":
            acc = row["public_test_accuracy"]
            best_so_far = acc if best_so_far is None else max(best_so_far, acc)
        lines.append(_progress_line(k, total, row, best_so_far))
    return lines


def _progress_line(k: int, total: int, row: dict[str, Any], best: float | None) -> str:
    values = ", ".join(
        f"{name}={row[name]}" if isinstance(row[name], str) else f"{name}={row[name]:.4g}" for name in SEARCHED
    )
    if row["status"] == "ok":
        outcome = f"accuracy {row['public_test_accuracy']:.4f}"
    else:
        outcome = f"FAILED ({row['error'] or row['status']})"
    best_text = "none yet" if best is None else f"{best:.4f}"
    seconds = f" in {row['time_s']:.1f}s" if row["time_s"] is not None else ""
    return f"trial {k}/{total}, best so far {best_text} | {outcome}{seconds} | {values}"


def _spark_trials(parallelism: int, previous: Any) -> Any:
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
