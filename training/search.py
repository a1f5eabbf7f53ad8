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

The pieces: ``training.search_space`` (the space, trial names), ``training.search_report`` (rows, CSV, best.json,
PNG, progress lines), ``training.search_backends`` (Spark, MongoDB, hyperopt plumbing); this module holds the
objective, the trials file and the driver, ``run_search``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parameters import Config, OptimizerSearchSpace
from training.search_backends import (
    Objective,
    copy_into,
    fmin_quiet,
    parse_mongo,
    plain_copy,
    progress_factory,
    spark_trials,
)
from training.search_report import (
    CSV_COLUMNS,
    best_row,
    finished_trials,
    plot_trials,
    progress_lines,
    report_paths,
    trial_rows,
    write_best,
    write_csv,
)
from training.search_space import FIXED_KEY, SEARCHED, SearchError, build_space, trial_name
from training.trials_io import check_mongo_reachable, load_trials  # restricted unpickler; re-exported

__all__ = [  # the search's public names, importable from here as before the split
    "CSV_COLUMNS", "FIXED_KEY", "SEARCHED", "SearchError", "SearchResult", "best_row", "build_space", "copy_into",
    "finished_trials", "load_trials", "objective", "plain_copy", "plot_trials", "progress_lines", "report_paths",
    "run_search", "run_trial", "save_trials", "trial_name", "trial_rows", "write_best", "write_csv",
]  # fmt: skip

# trials.attachments key recording what a trials file was made with, checked on resume.
_SIGNATURE_KEY = "fer_search_signature"


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
        parse_mongo(mongo)
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
                trials = spark_trials(spark, trials)
            fmin_quiet(
                fn, space, algo=tpe.suggest, max_evals=max_evals, trials=trials, max_queue_len=spark or 1,
                rstate=np.random.default_rng([seed, before]), verbose=True,
                show_progressbar=progress_factory(lambda: after_trials(trials)),
            )  # fmt: skip
        else:
            # One fmin call per trial, seeded by (seed, number of trials so far): an interrupted and resumed
            # search proposes exactly what an uninterrupted one would have.
            while len(finished_trials(trials)) < max_evals:
                n = len(trials.trials)
                fmin_quiet(
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
