"""Hyperparameter search (training/search.py, optimize_hyperparams.py).

Fast tests use an injected objective; the end-to-end ones train model A for 1 epoch on ~100 random 48x48 images
through training.trainer.train (the function train.py uses). Spark needs Java and pyspark; MongoDB needs a server
named by HYPEROPT_MONGO_URL (mongo://host:port/db/jobs) and skips without one.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_converted

from parameters import EMOTIONS, OptimizerSearchSpace, load_params_file

# Trainings run eagerly (conftest.eager_tensorflow): on a few dozen faces tracing costs more than training.
pytestmark = pytest.mark.usefixtures("eager_tensorflow")

REPO = Path(__file__).resolve().parents[1]
N_PER_SPLIT = {"Training": 64, "PublicTest": 24, "PrivateTest": 12}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A converted directory of 100 synthetic faces of all seven classes, every array present."""
    return write_converted(tmp_path_factory.mktemp("fer_tiny"), N_PER_SPLIT, EMOTIONS)


def fake_objective(params: dict) -> dict:
    """Deterministic stand-in for training: 'accuracy' peaks at learning_rate 0.05, keep_prob 0.9."""
    accuracy = 1.0 - abs(params["learning_rate"] - 0.05) - abs(params["keep_prob"] - 0.9)
    return {"status": "ok", "loss": -accuracy, "public_test_accuracy": accuracy, "time_s": 0.0}


class CountingObjective:
    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.calls: list[dict] = []
        self.fail_on = fail_on or set()

    def __call__(self, params: dict) -> dict:
        from training.search import run_trial

        self.calls.append(params)
        call = len(self.calls)

        class Outcome:
            best_public_accuracy = fake_objective(params)["public_test_accuracy"]

        def train_fn(config, data_dir, out_dir, *, resume=False, verbose=1):
            assert config.hyperparams.learning_rate == params["learning_rate"]
            if call in self.fail_on:
                raise RuntimeError(f"boom on call {call}")
            return Outcome()

        fixed = params["fixed"]
        searched = {k: v for k, v in params.items() if k != "fixed"}
        return run_trial(
            searched, data_dir=fixed["data_dir"], trials_dir=fixed["trials_dir"], overrides=fixed["overrides"],
            train_fn=train_fn,
        )  # fmt: skip


def _search(tmp_path: Path, max_evals: int, objective, name: str = "run", **kwargs):
    from training.search import run_search

    lines: list[str] = []
    kwargs.setdefault("search", OptimizerSearchSpace(optimizer=("momentum", "adam")))
    result = run_search(
        data_dir=tmp_path / "data", out=tmp_path / name / "best.json", max_evals=max_evals,
        trials_file=tmp_path / name / "trials.pkl", overrides={"model": "A", "epochs": 1}, base_params={"model": "A"},
        objective_fn=objective, log=lines.append, **kwargs,
    )  # fmt: skip
    return result, lines


# ------------------------------------------------------------------------------------------ space and errors


def test_space_uses_the_search_space_ranges_and_choices():
    from hyperopt.pyll.stochastic import sample

    from training.search import FIXED_KEY, build_space

    search = OptimizerSearchSpace(learning_rate=(0.001, 0.002), optimizer=("adam", "rmsprop"))
    space = build_space(search, {"data_dir": "D"})
    rng = np.random.default_rng(0)
    points = [sample(space, rng=rng) for _ in range(50)]
    assert all(0.001 <= p["learning_rate"] <= 0.002 for p in points)
    assert all(0.7 <= p["keep_prob"] <= 0.99 for p in points)
    assert {p["optimizer"] for p in points} == {"adam", "rmsprop"}
    assert all(p[FIXED_KEY] == {"data_dir": "D"} for p in points)


@pytest.mark.parametrize(
    ("search", "message"),
    [
        (OptimizerSearchSpace(learning_rate=(0.1, 0.01)), "learning_rate: min 0.1 must be below max 0.01"),
        (OptimizerSearchSpace(keep_prob=(0.5, 1.5)), "search space keep_prob: max 1.5 must be <= 1"),
        (OptimizerSearchSpace(learning_rate=(0.0, 0.1)), "search space learning_rate: min 0 must be > 0"),
        (OptimizerSearchSpace(learning_rate=(1e-3, float("inf"))), "max inf must be a finite number"),
        (OptimizerSearchSpace(optimizer=("sgd",)), "unknown 'sgd'"),
        (OptimizerSearchSpace(optimizer=()), "at least one optimizer"),
    ],
)
def test_bad_space_raises_a_clear_error(search, message):
    from training.search import SearchError, build_space

    with pytest.raises(SearchError) as err:
        build_space(search)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--learning-rate-range", "0.1", "0.01"], "--learning-rate-range: min 0.1 must be below max 0.01"),
        (["--keep-prob-range", "0.5", "1.5"], "--keep-prob-range: max 1.5 must be <= 1"),
        (["--learning-rate-range", "nan", "0.1"], "--learning-rate-range: min nan must be a finite number"),
        (["--learning-rate", "0.1"], "unrecognized arguments: --learning-rate"),  # one number: train.py's flag
        (["--optimizers", "momentum,sgd"], "--optimizers: unknown 'sgd'"),
        (["--batch-size", "-4"], "--batch-size: -4 must be >= 1"),
        (["--weight-decay", "inf"], "--weight-decay: inf must be a finite number"),
        (["--max-evals", "0"], "--max-evals 0"),
        (["--mongo", "mongo://localhost:27017/db/jobs"], "--exp-key"),
        (["--mongo", "mongo://h:1/db/jobs", "--exp-key", "x", "--spark", "2"], "not allowed with"),
        (["--model", "svm"], "invalid choice: 'svm'"),
        (["--epochs", "0"], "--epochs: 0 must be >= 1"),
    ],
)
def test_main_rejects_bad_values_with_nonzero_exit(tiny_data, tmp_path, capsys, flags, message):
    import optimize_hyperparams

    argv = ["--data", str(tiny_data), "--max-evals", "2", "--out", str(tmp_path / "best.json"), *flags]
    with pytest.raises(SystemExit) as exit_info:
        optimize_hyperparams.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "best.json").exists()


def test_params_file_then_flags_set_what_every_trial_trains_with(tiny_data, tmp_path):
    import optimize_hyperparams

    params = tmp_path / "base.json"
    params.write_text(json.dumps({"params": {"model": "A", "augment": True, "epochs": 7, "batch_size": 16}}))
    args = optimize_hyperparams.parse_args(
        ["--data", str(tiny_data), "--max-evals", "1", "--params", str(params), "--batch-size", "32"]
    )
    assert args.overrides["model"] == "A" and args.overrides["augment"] is True  # from the file
    assert args.overrides["batch_size"] == 32 and args.overrides["epochs"] == 7  # flag wins; file beats default
    assert "epochs" not in args.base_params and args.base_params["batch_size"] == 32


@pytest.mark.parametrize(("params", "message"), [({"epochs": None}, "epochs: null is not a valid value"),
                                                 ({"batch_size": "32"}, "batch_size: '32' is not an integer"),
                                                 ({"weight_decay": -1}, "weight_decay: -1.0 must be >= 0")])
def test_bad_params_file_names_the_file_and_key(tiny_data, tmp_path, capsys, params, message):
    import optimize_hyperparams

    path = tmp_path / "base.json"
    path.write_text(json.dumps(params))
    with pytest.raises(SystemExit) as exit_info:
        optimize_hyperparams.main(["--data", str(tiny_data), "--max-evals", "1", "--params", str(path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"{path}: {message}" in err and "Traceback" not in err


def test_bad_mongo_url_is_a_clear_error(tmp_path):
    from training.search import SearchError

    with pytest.raises(SearchError, match="expected mongo://host:port/db/jobs"):
        _search(tmp_path, 1, fake_objective, mongo="localhost:27017/db", exp_key="x")


# ----------------------------------------------------------------------------- search with a fake objective


def test_search_writes_best_csv_png_and_progress(tmp_path):
    result, lines = _search(tmp_path, 4, fake_objective)
    assert [r["tid"] for r in result.rows] == [0, 1, 2, 3]
    best = max(result.rows, key=lambda r: r["public_test_accuracy"])
    document = json.loads((tmp_path / "run" / "best.json").read_text())
    assert document["public_test_accuracy"] == pytest.approx(best["public_test_accuracy"])
    assert document["trial"] == best["tid"]
    params = load_params_file(tmp_path / "run" / "best.json")  # the shape train.py --params reads
    assert params["learning_rate"] == pytest.approx(best["learning_rate"])
    assert params["optimizer"] in ("momentum", "adam") and params["model"] == "A"
    assert "epochs" not in params
    with result.csv_path.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert float(rows[2]["public_test_accuracy"]) == pytest.approx(result.rows[2]["public_test_accuracy"])
    assert result.png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(lines) == 4 and lines[3].startswith("trial 4/4, best so far ")
    assert f"{best['public_test_accuracy']:.4f}" in lines[3]


def test_resume_continues_without_rerunning_and_matches_an_uninterrupted_search(tmp_path):
    first = CountingObjective()
    _search(tmp_path, 2, first, name="resumed")
    assert len(first.calls) == 2
    second = CountingObjective()
    result, lines = _search(tmp_path, 3, second, name="resumed")
    assert len(second.calls) == 1, "the first two trials were evaluated again"
    assert [r["tid"] for r in result.rows] == [0, 1, 2]
    assert lines[0].startswith("continuing ") and lines[1].startswith("trial 3/3")
    whole = CountingObjective()
    uninterrupted, _ = _search(tmp_path, 3, whole, name="whole")
    for a, b in zip(result.rows, uninterrupted.rows, strict=True):
        assert a["learning_rate"] == b["learning_rate"] and a["optimizer"] == b["optimizer"]
    # a third run at the same total trains nothing and still reports
    third = CountingObjective()
    again, _ = _search(tmp_path, 3, third, name="resumed")
    assert third.calls == [] and len(again.rows) == 3 and again.png_path.exists()


def test_ctrl_c_during_a_trial_keeps_the_finished_ones(tmp_path):
    class Interrupted(CountingObjective):
        def __call__(self, params):
            if len(self.calls) == 2:
                raise KeyboardInterrupt
            return super().__call__(params)

    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path, 4, Interrupted())
    assert len(pickle.loads((tmp_path / "run" / "trials.pkl").read_bytes()).trials) == 2
    objective = CountingObjective()
    result, _ = _search(tmp_path, 4, objective)
    assert len(objective.calls) == 2 and [r["tid"] for r in result.rows] == [0, 1, 2, 3]


def test_failing_trial_is_recorded_and_the_search_goes_on(tmp_path):
    objective = CountingObjective(fail_on={2})
    result, lines = _search(tmp_path, 3, objective)
    assert [r["status"] for r in result.rows] == ["ok", "fail", "ok"]
    assert result.rows[1]["error"] == "RuntimeError: boom on call 2"
    assert "FAILED (RuntimeError: boom on call 2)" in lines[1]
    with result.csv_path.open() as handle:
        assert list(csv.DictReader(handle))[1]["error"] == "RuntimeError: boom on call 2"
    stored = pickle.loads((tmp_path / "run" / "trials.pkl").read_bytes())
    assert stored.trials[1]["result"]["status"] == "fail" and "boom" in stored.trials[1]["result"]["traceback"]
    assert json.loads((tmp_path / "run" / "best.json").read_text())["trial"] in (0, 2)


def test_search_where_every_trial_fails_still_reports(tmp_path):
    objective = CountingObjective(fail_on={1, 2})
    result, lines = _search(tmp_path, 2, objective)
    assert result.best is None and result.best_path is None
    assert [r["status"] for r in result.rows] == ["fail", "fail"]
    assert lines[1].startswith("trial 2/2, best so far none yet | FAILED (RuntimeError: boom on call 2)")
    assert not (tmp_path / "run" / "best.json").exists() and result.csv_path.exists()


def test_resume_with_another_space_is_refused(tmp_path):
    from training.search import SearchError

    _search(tmp_path, 1, fake_objective)
    with pytest.raises(SearchError, match=r"different search \(space.optimizer"):
        _search(tmp_path, 2, fake_objective, search=OptimizerSearchSpace(optimizer=("adam", "momentum")))


def test_trials_file_is_replaced_atomically_and_corrupt_files_are_reported(tmp_path):
    from hyperopt import Trials

    from training.search import load_trials, save_trials
    from training.trials_io import TrialsFileError

    path = tmp_path / "t" / "trials.pkl"
    save_trials(Trials(), path)
    save_trials(Trials(), path)
    assert [p.name for p in path.parent.iterdir()] == ["trials.pkl"]
    path.write_bytes(b"not a pickle")
    with pytest.raises(TrialsFileError, match="not a readable hyperopt trials file"):
        load_trials(path)


def test_copied_trials_keep_their_ids_so_new_trials_do_not_collide(tmp_path):
    """What a Spark search does on resume: finished trials go into a fresh Trials object."""
    from hyperopt import Trials

    from training.search import copy_into, finished_trials

    _search(tmp_path, 2, fake_objective)
    old = pickle.loads((tmp_path / "run" / "trials.pkl").read_bytes())
    fresh = Trials()
    copy_into(finished_trials(old), fresh)
    assert [t["tid"] for t in fresh.trials] == [0, 1]
    assert fresh.new_trial_ids(1) == [2]


def test_domain_unpickles_on_a_worker_with_the_objective_by_reference(tmp_path):
    """What MongoTrials stores for hyperopt-mongo-worker: the objective must load by reference from training.search."""
    from hyperopt.base import Domain
    from hyperopt.fmin import pickler

    from training.search import build_space, objective

    blob = pickler.dumps(Domain(objective, build_space(OptimizerSearchSpace(), {"data_dir": "/d", "trials_dir": "/t"})))
    code = (
        "import sys; from hyperopt.fmin import pickler; d = pickler.loads(sys.stdin.buffer.read()); "
        "import training.search as m; assert d.fn is m.objective, d.fn; print(d.fn.__module__)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], input=blob, capture_output=True, cwd=tmp_path, env=env, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().strip() == "training.search"


# ------------------------------------------------------------------------- end to end with real training


def _main(data: Path, out: Path, *flags: str) -> int:
    import optimize_hyperparams

    return optimize_hyperparams.main(
        ["--data", str(data), "--out", str(out / "best.json"), "--trials-file", str(out / "trials.pkl"),
         "--model", "fernet", "--width", "4", "--features", "raw", "--epochs", "1", "--batch-size", "32", *flags]
    )  # fmt: skip


@pytest.mark.slow
def test_end_to_end_search_of_three_trials(tiny_data, tmp_path, capsys):
    assert _main(tiny_data, tmp_path, "--max-evals", "3", "--optimizers", "momentum,adam") == 0
    printed = capsys.readouterr().out
    assert "trial 3/3, best so far" in printed
    rows = list(csv.DictReader((tmp_path / "best_trials.csv").open()))
    assert [r["status"] for r in rows] == ["ok"] * 3, [r["error"] for r in rows]
    accuracies = [float(r["public_test_accuracy"]) for r in rows]
    assert all(0.0 <= a <= 1.0 for a in accuracies)
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["public_test_accuracy"] == pytest.approx(max(accuracies))
    assert best["params"]["model"] == "fernet" and best["params"]["feature_set"] == "raw"
    assert all(Path(r["trial_dir"]).parent == (tmp_path / "trials").resolve() for r in rows)
    import train  # best.json is what train.py --params reads

    config = train.build_config(train.parse_args(["--data", str(tiny_data), "--params", str(tmp_path / "best.json")]))
    assert config.hyperparams.learning_rate == best["params"]["learning_rate"]
    assert (config.network.model, config.network.width, config.dataset.feature_set) == ("fernet", 4, "raw")
    assert config.training.batch_size == 32
    assert (tmp_path / "best_trials.png").stat().st_size > 1000


@pytest.mark.slow
def test_end_to_end_interrupt_after_two_and_resume_to_three(tiny_data, tmp_path, capsys):
    assert _main(tiny_data, tmp_path, "--max-evals", "2") == 0
    first = pickle.loads((tmp_path / "trials.pkl").read_bytes())
    booked = {t["tid"]: t["book_time"] for t in first.trials}
    assert len(booked) == 2
    capsys.readouterr()
    assert _main(tiny_data, tmp_path, "--max-evals", "3") == 0
    printed = capsys.readouterr().out
    assert "continuing" in printed and "trial 3/3, best so far" in printed and "trial 1/" not in printed
    second = pickle.loads((tmp_path / "trials.pkl").read_bytes())
    assert [t["tid"] for t in second.trials] == [0, 1, 2]
    assert {t["tid"]: t["book_time"] for t in second.trials[:2]} == booked, "a finished trial was run again"
    assert all(t["result"]["status"] == "ok" for t in second.trials), [t["result"].get("error") for t in second]
    assert len(list(csv.DictReader((tmp_path / "best_trials.csv").open()))) == 3


def _java_missing() -> str | None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed"
    if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
        return "Spark needs Java (apt-get install default-jre-headless)"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_java_missing() is not None, reason=str(_java_missing()))
def test_spark_local_search_of_two_trials(tiny_data, tmp_path, capsys):
    assert _main(tiny_data, tmp_path, "--max-evals", "2", "--spark", "2") == 0
    printed = capsys.readouterr().out
    assert "trial 2/2, best so far" in printed
    rows = list(csv.DictReader((tmp_path / "best_trials.csv").open()))
    assert [r["tid"] for r in rows] == ["0", "1"]
    assert [r["status"] for r in rows] == ["ok", "ok"], [r["error"] for r in rows]
    stored = pickle.loads((tmp_path / "trials.pkl").read_bytes())  # a plain Trials, resumable
    assert type(stored).__name__ == "Trials" and len(stored.trials) == 2


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("HYPEROPT_MONGO_URL"),
    reason="set HYPEROPT_MONGO_URL=mongo://host:port/db/jobs to run the MongoDB search (no server here)",
)
def test_mongo_search_with_one_worker(tiny_data, tmp_path, capsys):
    url = os.environ["HYPEROPT_MONGO_URL"]
    exp_key = f"test-{os.getpid()}-{tmp_path.name}"
    worker_cmd = [
        str(Path(sys.executable).parent / "hyperopt-mongo-worker"),  # the command the README documents
        f"--mongo={url.removeprefix('mongo://').removesuffix('/jobs')}", f"--exp-key={exp_key}",
        "--poll-interval=0.5", "--reserve-timeout=60", "--max-jobs=2", f"--workdir={tmp_path / 'worker'}",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    worker = subprocess.Popen(worker_cmd, cwd=REPO, env=env)
    try:
        rc = _main(tiny_data, tmp_path, "--max-evals", "2", "--mongo", url, "--exp-key", exp_key)
        worker.wait(timeout=120)
    finally:
        if worker.poll() is None:
            worker.terminate()
            worker.wait(timeout=30)
    assert rc == 0
    assert "trial 2/2, best so far" in capsys.readouterr().out
    rows = list(csv.DictReader((tmp_path / "best_trials.csv").open()))
    assert [r["status"] for r in rows] == ["ok", "ok"], [r["error"] for r in rows]


def test_progress_numbers_trials_in_order_of_completion():
    """Parallel trials (Spark) can finish out of tid order: the k-th to finish is "trial k", best so far is theirs."""
    from training.search import progress_lines

    def row(tid, acc):
        return {"tid": tid, "status": "ok", "public_test_accuracy": acc, "error": "", "time_s": 1.0,
                "learning_rate": 0.01, "learning_rate_decay": 0.9, "optimizer": "momentum",
                "optimizer_param": 0.9, "keep_prob": 0.8}

    first = progress_lines([row(1, 0.30)], reported=set(), new_tids={1}, total=2)
    assert len(first) == 1 and first[0].startswith("trial 1/2, best so far 0.3000 | accuracy 0.3000")
    second = progress_lines([row(0, 0.25), row(1, 0.30)], reported={1}, new_tids={0}, total=2)
    assert len(second) == 1 and second[0].startswith("trial 2/2, best so far 0.3000 | accuracy 0.2500")
    both = progress_lines([row(0, 0.25), row(1, 0.30)], reported=set(), new_tids={0, 1}, total=3)
    assert [line.split(",")[0] for line in both] == ["trial 1/3", "trial 2/3"]
