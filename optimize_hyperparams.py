"""Search the optimizer hyperparameters with hyperopt (TPE), scoring each trial by its PublicTest accuracy.

Each trial trains with training.trainer.train, the function train.py uses, on the converted data directory. The
trials are pickled to --trials-file after every evaluation: rerun the same command (with a larger --max-evals if you
like) to continue an interrupted search. Writes --out (best.json, read by `train.py --params`), and next to it
<stem>_trials.csv (every trial: params, accuracy, seconds, status, error) and <stem>_trials.png.

    # 30 trials of model B, 3 epochs each, trying momentum and adam
    python optimize_hyperparams.py --data out/fer2013 --max-evals 30 --epochs 3 --optimizers momentum,adam \\
        --learning-rate-range 0.001 0.05 --trials-file out/search/trials.pkl --out out/search/best.json
    python train.py --data out/fer2013 --params out/search/best.json

    # 4 trials at a time on Spark (local[*] without a cluster; use spark-submit --master ... for one)
    python optimize_hyperparams.py --data out/fer2013 --max-evals 40 --spark 4

    # MongoDB: this process queues trials, workers started with `hyperopt-mongo-worker` train them
    python optimize_hyperparams.py --data /shared/fer2013 --max-evals 100 \\
        --mongo mongo://dbhost:27017/fer/jobs --exp-key model-b

--trials-file is read through a restricted unpickler that admits only what a hyperopt Trials holds (a crafted pickle
cannot run code); an unreachable --mongo host is reported within 5 s. Exit codes (errors.py): 0 done, 1 bad data,
trials file or back end, or no trial succeeded, 2 a bad command line, 130 interrupted (rerun to continue).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, UserError
from flags import add_config_fields, add_fields, config_from_args, given, replace_from_args
from parameters import Config, ConfigError, OptimizerSearchSpace, load_params_file

# Searched (their ranges are flags of their own) or set by the search itself: no flag of the shared training setup.
_NOT_SHARED = ("learning_rate", "learning_rate_decay", "optimizer", "optimizer_param", "keep_prob", "save_model")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from models import available_models, is_keras_model

    # no abbreviations: the old `--keep-prob MIN MAX` must not silently mean --keep-prob-range
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--data", type=Path, required=True, help="converted data directory (convert_fer2013.py)")
    parser.add_argument("--max-evals", type=int, required=True, help="total trials, counting those already done")
    parser.add_argument(
        "--trials-file",
        type=Path,
        default=Path("out/search/trials.pkl"),
        help="pickled hyperopt Trials, saved after each trial; reused to resume (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("out/search/best.json"),
        help="best trial as train.py --params JSON; CSV and PNG go next to it (default: %(default)s)",
    )
    parser.add_argument(
        "--trials-dir", type=Path, default=None, help="where trials train (default: a 'trials' folder next to --out)"
    )
    parser.add_argument(
        "--params",
        type=Path,
        default=None,
        help="JSON of parameters every trial uses (augment, schedule, ...), as train.py --params; flags win",
    )
    parser.add_argument(
        "--save-models",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="keep each trial's model and checkpoint (an interrupted trial then resumes; default: off)",
    )
    parser.add_argument("--verbose", type=int, choices=[0, 1, 2], default=0, help="Keras verbosity inside a trial")
    parser.add_argument("--tf-logs", action=argparse.BooleanOptionalAction, default=False,
                        help="show TensorFlow's own start-up logging (hidden by default)")
    ranges = parser.add_argument_group("search space (parameters.OptimizerSearchSpace; uniform between MIN and MAX)")
    add_fields(ranges, OptimizerSearchSpace)
    keras_names = [name for name in available_models() if is_keras_model(name)]  # the svm has nothing to tune here
    shared = [name for name in Config.fields() if name not in _NOT_SHARED]
    add_config_fields(parser, names=shared, choices={"model": keras_names}, title="every trial's training: ")
    backend = parser.add_mutually_exclusive_group()
    backend.add_argument(
        "--mongo",
        metavar="mongo://HOST:PORT/DB/jobs",
        default=None,
        help="queue trials in MongoDB (hyperopt MongoTrials) for hyperopt-mongo-worker processes",
    )
    backend.add_argument(
        "--spark",
        type=int,
        metavar="PARALLELISM",
        default=None,
        help="run PARALLELISM trials at a time with hyperopt SparkTrials",
    )
    parser.add_argument("--exp-key", default=None, help="experiment name in MongoDB (needed with --mongo)")
    args = parser.parse_args(argv)

    if args.max_evals < 1:
        parser.error(f"--max-evals {args.max_evals}: must be >= 1")
    if args.spark is not None and args.spark < 1:
        parser.error(f"--spark {args.spark}: parallelism must be >= 1")
    if args.mongo and not args.exp_key:
        parser.error("--mongo needs --exp-key NAME (the experiment the trials belong to)")
    if not (args.data / "meta.json").is_file():
        parser.error(f"--data {args.data}: no meta.json there; convert the csv with convert_fer2013.py first")
    args.search = replace_from_args(OptimizerSearchSpace(), args)  # each range was checked as it was parsed

    # What every trial trains with: Config() <- --params file <- flags, as train.py builds its config.
    try:
        config = config_from_args(args, params_file=args.params)
        base = load_params_file(args.params) if args.params is not None else {}
    except ConfigError as err:
        parser.error(str(err))
    if not is_keras_model(config.network.model):
        parser.error(f"model {config.network.model}: no optimizer hyperparameters to search; choose a Keras model")
    # best.json's params: what the trials shared, without the search's own epochs and seed.
    shared_values = {
        **given(args, [f for _, f in Config.fields().values()]),
        "model": config.network.model,
        "feature_set": config.dataset.feature_set,
        "batch_size": config.training.batch_size,
        "global_clipnorm": config.hyperparams.global_clipnorm,
    }
    args.base_params = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in {**base, **shared_values}.items()
        if k not in ("epochs", "seed", "save_model")
    }
    args.overrides = {
        **args.base_params,
        "epochs": config.training.epochs,
        "seed": config.training.seed,
        "save_model": args.save_models,
    }
    args.seed = config.training.seed
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from training.trials_io import check_mongo_reachable, load_trials

    try:  # the back end's own errors come now, not after TensorFlow's ~10 s import
        if args.mongo:
            check_mongo_reachable(args.mongo)
        elif args.trials_file is not None:
            load_trials(args.trials_file)
    except UserError as err:
        print(f"optimize_hyperparams.py: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    from tf_logging import quiet_tensorflow

    quiet_tensorflow(verbose=args.tf_logs)
    from training.search import run_search

    try:
        result = run_search(
            args.search,
            data_dir=args.data,
            out=args.out,
            max_evals=args.max_evals,
            trials_file=args.trials_file,
            trials_dir=args.trials_dir,
            overrides=args.overrides,
            base_params=args.base_params,
            seed=args.seed,
            mongo=args.mongo,
            exp_key=args.exp_key,
            spark=args.spark,
            verbose=args.verbose,
        )
    except UserError as err:
        print(f"optimize_hyperparams.py: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        where = f"{args.mongo} (exp-key {args.exp_key})" if args.mongo else args.trials_file
        print(f"\ninterrupted; finished trials are in {where}: rerun the same command to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    n_ok = sum(row["status"] == "ok" for row in result.rows)
    print(
        f"{len(result.rows)} trials ({n_ok} ok, {len(result.rows) - n_ok} failed); "
        f"report: {result.csv_path}, {result.png_path}"
    )
    if result.best is None:
        print("no trial succeeded; see the error column of the CSV", file=sys.stderr)
        return EXIT_ERROR
    print(
        f"best PublicTest accuracy {result.best['public_test_accuracy']:.4f} (trial {result.best['tid']}) "
        f"-> {result.best_path}"
    )
    return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
