"""Reproduce the original repository's results table with this project's own convert and train code.

The grid: expressions {5: Angry, Happy, Sad, Surprise, Neutral (0,3,4,5,6); 7: all} x models {SVM, A, B} x feature
sets {raw, landmarks, landmarks_hog, landmarks_hog_windows} (SVM on raw pixels is "–", as in the original), batch
norm after the conv layers on (and off with --batchnorm-ablation), plus FER+ cells (Model B and the bundled fernet
on the FER+ majority labels, 8 classes) when the FER+ file is present. Each cell: data.convert.convert (once per
label set) -> training.trainer.train (select on PublicTest) -> inference.evaluation.evaluate_run (PrivateTest, once).
Models A/B train with the 2016 code's recipe (clipping at 5.0, unscaled features, tflearn's initialisers), fernet
with the bundled model's (FERNET_RECIPE).

Resumable: every finished cell appends a row to results.csv (with the recipe it trained with) and is skipped on the
next run; an interrupted cell continues from its run directory's checkpoint. One results.csv holds one recipe: a run
asking for another (--global-clipnorm, --standardize-features, --initializer) on cells already measured is refused;
give it another --out-dir. After every cell experiments/reproduce_render.py rewrites RESULTS.md, results.png and
learning_curves.png in --out-dir. Costs, timings and smoke runs: docs/REPRODUCING.md.

    python experiments/reproduce_table.py --list                        # the cells
    python experiments/reproduce_table.py                               # the full grid (hours on a CPU)
    python experiments/reproduce_table.py --batchnorm-ablation --only 'fer5:B:*'
    python experiments/reproduce_table.py --epochs 1 --limit 600 --work-dir /tmp/rt --out-dir /tmp/rt   # smoke run
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import fnmatch
import math
import os
import platform
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from experiments.reproduce_render import Cell, grid, read_results, render_all, replaced_atomically  # noqa: E402
from flags import add_fields  # noqa: E402
from parameters import Config, Hyperparams, Network, Training  # noqa: E402

DEFAULT_CSV = ROOT.parent / "shared" / "data" / "fer2013.csv.gz"
DEFAULT_FERPLUS = ROOT.parent / "shared" / "data" / "fer2013new.csv"
FIVE = (0, 3, 4, 5, 6)

# fernet cells train with the bundled model's recipe (README), not the 2016 hyperparameters; --epochs overrides 80.
FERNET_RECIPE: dict[str, object] = {
    "width": 16, "epochs": 80, "batch_size": 128, "optimizer": "momentum", "optimizer_param": 0.9,
    "learning_rate": 0.05, "schedule": "cosine", "warmup_epochs": 1.0, "weight_decay": 0.0005,
    "label_smoothing": 0.1, "augment": True, "random_erasing": 0.3, "keep_prob": 0.7,
    "global_clipnorm": 0.0,  # the recipe as measured (README), without the 2016 code's clipping
}

# Models A/B: the 2016 code's recipe where it differs from train.py's defaults (clipping at 5.0 is the default).
RECIPE_2016: dict[str, object] = {"standardize_features": False, "initializer": "tflearn"}
# results.csv's record of how a cell trained, beyond its id ("" where the cell's model does not read the field)
RECIPE_FIELDS = ("global_clipnorm", "standardize_features", "initializer")
CSV_FIELDS = (
    "cell", "dataset", "n_classes", "model", "feature_set", "batchnorm", "epochs", "limit", "svm_kernel",
    "global_clipnorm", "standardize_features", "initializer", "public_test_accuracy", "private_test_accuracy",
    "best_epoch", "n_train", "seconds", "finished", "hardware",
    # the learning curve and per-class results: PublicTest accuracy after each epoch ("0.48864;0.61047;..."), Training
    # accuracy after the last epoch, PrivateTest recall per class ("Angry=0.55397;Happy=0.82935;...")
    "public_test_by_epoch", "train_accuracy", "private_test_recall",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help=f"fer2013.csv(.gz) (default {DEFAULT_CSV})")
    parser.add_argument("--ferplus", type=Path, default=DEFAULT_FERPLUS,
                        help="fer2013new.csv for the FER+ cells (default: the shared copy; skipped when absent)")
    parser.add_argument("--no-ferplus-cells", dest="ferplus_cells", action="store_false",
                        help="leave out the FER+ cells")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "reproduce",
                        help="converted data and run directories (default runs/reproduce)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs",
                        help="where RESULTS.md and results.csv go (default docs/; use a temp dir for smoke runs)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="at most about N faces per split (N / classes per class): a quick smoke run")
    parser.add_argument("--only", default=None, metavar="PATTERNS",
                        help="comma-separated glob patterns on cell ids DATASET:MODEL:FEATURES:BN, e.g. "
                             "'fer5:B:*,fer7:*:raw:bn' (list them with --list)")
    parser.add_argument("--batchnorm-ablation", action=argparse.BooleanOptionalAction, default=False,
                        help="also train Models A/B without batch norm after the conv layers (default: off)")
    parser.add_argument("--workers", type=int, default=1, help="processes for landmark extraction (default 1)")
    parser.add_argument("--list", action="store_true", help="print the cell ids and exit")
    parser.add_argument("--verbose", type=int, choices=[0, 1, 2], default=2, help="training output (default 2)")
    cells = parser.add_argument_group("every cell (parameters.py's flags; Models A/B default to the 2016 recipe)")
    add_fields(cells, Training, ["epochs", "seed"])
    add_fields(cells, Hyperparams, ["global_clipnorm", "svm_kernel"])
    add_fields(cells, Network, ["standardize_features", "initializer"],
               defaults=dataclasses.replace(Network(), **RECIPE_2016))
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 2:
        parser.error("--limit must be >= 2")
    if not args.list and not args.csv.is_file():
        parser.error(f"--csv {args.csv}: no such file")
    return args


def select_cells(cells: list[Cell], only: str | None) -> list[Cell]:
    """The cells whose id matches one of the comma-separated glob patterns (all without patterns)."""
    if not only:
        return cells
    patterns = [p.strip() for p in only.split(",") if p.strip()]
    chosen = [c for c in cells if any(fnmatch.fnmatchcase(c.id, p) for p in patterns)]
    if not chosen:
        raise SystemExit(f"--only {only!r} matches no cell; cells: {', '.join(c.id for c in cells)}")
    return chosen


# ------------------------------------------------------------------------------------------------- pieces


def prepare_data(dataset: str, args: argparse.Namespace) -> Path:
    """The converted directory for ``dataset`` (converted once, with every feature, through data.convert)."""
    from data.convert import ConvertOptions, convert
    from data.dataset import read_meta

    out = args.work_dir / "data" / dataset
    expressions = FIVE if dataset == "fer5" else None
    n_classes = 5 if dataset == "fer5" else (8 if dataset == "ferplus" else 7)
    per_label = math.ceil(args.limit / n_classes) if args.limit else None
    if (out / "meta.json").is_file():
        meta = read_meta(out)
        if meta["options"].get("images_per_label") != per_label:
            raise SystemExit(f"{out} was converted with images_per_label {meta['options'].get('images_per_label')}, "
                             f"this run needs {per_label} (--limit): use another --work-dir")
        return out
    options = ConvertOptions(
        expressions=expressions, images_per_label=per_label, workers=args.workers,
        ferplus=str(args.ferplus) if dataset == "ferplus" else None,
    )
    start = time.perf_counter()
    print(f"converting {args.csv} -> {out} ({dataset}) ...", flush=True)
    convert(args.csv, out, options)
    print(f"converted {dataset} in {time.perf_counter() - start:.0f} s", flush=True)
    return out


def cell_config(cell: Cell, args: argparse.Namespace) -> Config:
    """The parameters.Config one cell trains with: the cell's model and features, the 2016 recipe for Models A/B
    (the bundled model's for fernet), then the flags given."""
    overrides: dict[str, object] = {
        "model": cell.model, "feature_set": cell.feature_set, "use_batchnorm_after_conv_layers": cell.batchnorm,
    }
    given = {name: getattr(args, name) for name in ("epochs", "seed", "svm_kernel")
             if getattr(args, name) is not None}
    if cell.model in ("A", "B"):
        overrides.update(RECIPE_2016)
        given.update({name: getattr(args, name) for name in RECIPE_FIELDS if getattr(args, name) is not None})
    if cell.model == "fernet":
        overrides.update(FERNET_RECIPE)
    return Config().with_overrides({**overrides, **given})


def _has_feature_branch(model: str, feature_set: str) -> bool:
    return model in ("A", "B") and feature_set != "raw"


def _recipe_fields(cell: Cell, config: Config) -> dict[str, str]:
    """A config's results.csv recipe fields: ``global_clipnorm`` ("" for the SVM, which has no gradients),
    ``standardize_features`` ("" where no Model A/B feature branch reads features) and ``initializer`` ("" for
    models other than A/B, which do not read it)."""
    return {
        "global_clipnorm": "" if cell.model == "svm" else f"{config.hyperparams.global_clipnorm:g}",
        "standardize_features": (str(config.network.standardize_features)
                                 if _has_feature_branch(cell.model, cell.feature_set) else ""),
        "initializer": config.network.initializer if cell.model in ("A", "B") else "",
    }


def cell_recipe(cell: Cell, args: argparse.Namespace) -> dict[str, str]:
    """The results.csv recipe fields of a cell run now."""
    return _recipe_fields(cell, cell_config(cell, args))


def row_recipe(row: dict[str, str]) -> dict[str, str]:
    """The recipe fields a results.csv row records."""
    return {name: row.get(name) or "" for name in RECIPE_FIELDS}


def check_recipes(cells: list[Cell], rows: dict[str, dict[str, str]], args: argparse.Namespace,
                  results_csv: Path) -> None:
    """Refuse (SystemExit with one line) to add cells of another recipe to a results.csv measured with one."""
    for cell in cells:
        if cell.id in rows and row_recipe(rows[cell.id]) != cell_recipe(cell, args):
            old, new = row_recipe(rows[cell.id]), cell_recipe(cell, args)
            change = ", ".join(f"{key} {old[key] or '–'} -> {new[key] or '–'}" for key in new if old[key] != new[key])
            raise SystemExit(f"{results_csv}: {cell.id} was measured with another recipe ({change}); give another "
                             "--out-dir to measure this one")


def run_cell(cell: Cell, data_dir: Path, args: argparse.Namespace) -> dict[str, object]:
    """Train (resuming an interrupted run) and evaluate one cell; the CSV row."""
    from inference.evaluation import evaluate_run
    from training.trainer import train

    config = cell_config(cell, args)
    recipe = _recipe_fields(cell, config)
    # Each recipe gets its own directory: a checkpoint trained another way must not be resumed.
    suffix = f"_clip{recipe['global_clipnorm']}" if recipe["global_clipnorm"] not in ("", "0") else ""
    suffix += "_rawfeat" if recipe["standardize_features"] == "False" else ""
    suffix += "_tflinit" if recipe["initializer"] == "tflearn" else ""
    run_dir = args.work_dir / "runs" / (cell.id.replace(":", "_") + suffix)
    start = time.perf_counter()
    result = train(config, data_dir, run_dir, resume=True, verbose=args.verbose)
    evaluated = time.perf_counter()
    metrics = evaluate_run(result.model_path, data_dir, run_dir, verbose=0)
    # A resumed cell: its epochs' wall time summed over every run (checkpointed), not only this run's share.
    seconds = time.perf_counter() - (evaluated - result.train_seconds if result.train_seconds else start)
    return {
        "cell": cell.id, "dataset": cell.dataset, "n_classes": len(metrics["PrivateTest"]["class_names"]),
        "model": cell.model, "feature_set": cell.feature_set,
        "batchnorm": "" if cell.model == "svm" else cell.batchnorm,
        "epochs": 1 if cell.model == "svm" else config.training.epochs, "limit": args.limit or "",
        "svm_kernel": config.hyperparams.svm_kernel if cell.model == "svm" else "", **recipe,
        "public_test_accuracy": round(metrics["public_test_accuracy"], 5),
        "private_test_accuracy": round(metrics["private_test_accuracy"], 5),
        "best_epoch": result.best_epoch, "n_train": _n_train(data_dir),
        "seconds": round(seconds, 1), "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "hardware": hardware(), **_curve_fields(result.history, metrics["PrivateTest"]),
    }


def _curve_fields(history: dict[str, list[float]], private: dict) -> dict[str, str]:
    """The CSV's learning-curve columns from train's history (every epoch, resumes included) and the PrivateTest
    metrics of evaluate_run."""
    return {
        "public_test_by_epoch": ";".join(f"{v:.5f}" for v in history.get("val_accuracy", [])),
        "train_accuracy": f"{history['accuracy'][-1]:.5f}" if history.get("accuracy") else "",
        "private_test_recall": ";".join(f"{name}={private['per_class'][name]['recall']:.5f}"
                                        for name in private["class_names"]),
    }


def _n_train(data_dir: Path) -> int:
    from data.dataset import read_meta

    return sum(read_meta(data_dir)["counts"]["Training"].values())


def append_result(path: Path, row: dict[str, object]) -> None:
    """Add one row to the results CSV, replacing the cell's earlier row if any. A CSV written before a column existed
    is rewritten (atomically) with the current header, its old rows leaving the new columns empty."""
    header = None
    if path.is_file():
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), None)
    old = read_results(path) if header else {}
    if header == list(CSV_FIELDS) and row["cell"] not in old:
        with path.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=CSV_FIELDS).writerow(row)
        return
    old_rows = [r for cell, r in old.items() if cell != row["cell"]]
    with replaced_atomically(path) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows([*old_rows, row])


def hardware() -> str:
    """One line: CPU model, cores, memory, GPU (if TensorFlow sees one)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = "no GPU"
    try:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            gpu = ", ".join(g.name for g in gpus)
    except ImportError:
        pass
    return f"{cpu}, {cores} usable cores, {gpu}, {platform.system()} {platform.release()}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with_ferplus = args.ferplus_cells and args.ferplus.is_file()
    cells = select_cells(grid(args.batchnorm_ablation, with_ferplus), args.only)
    if args.list:
        print("\n".join(c.id for c in cells))
        return 0
    results_csv = args.out_dir / "results.csv"
    rows = read_results(results_csv)
    check_recipes(cells, rows, args, results_csv)
    todo = [c for c in cells if c.id not in rows]
    print(f"{len(cells)} cells, {len(cells) - len(todo)} already in {results_csv}, {len(todo)} to run", flush=True)
    command = shlex.join(["python", "experiments/reproduce_table.py", *(sys.argv[1:] if argv is None else argv)])

    data_dirs: dict[str, Path] = {}
    for i, cell in enumerate(todo, 1):
        if cell.dataset not in data_dirs:
            data_dirs[cell.dataset] = prepare_data(cell.dataset, args)
        print(f"[{i}/{len(todo)}] {cell.id}", flush=True)
        row = run_cell(cell, data_dirs[cell.dataset], args)
        append_result(results_csv, row)
        print(f"[{i}/{len(todo)}] {cell.id}: PrivateTest {row['private_test_accuracy']:.4f} "
              f"(PublicTest {row['public_test_accuracy']:.4f}) in {row['seconds']:.0f} s", flush=True)
        # after every cell, so a stopped run leaves an up-to-date table; from the CSV, which also holds cells that
        # another reproduce_table process appended meanwhile
        render_all(results_csv, args.out_dir, command)
    if not todo:  # otherwise the last cell has just written them
        render_all(results_csv, args.out_dir, command)
    print(f"wrote {args.out_dir / 'RESULTS.md'}, {args.out_dir / 'results.png'}, "
          f"{args.out_dir / 'learning_curves.png'} (once a cell has a learning curve) and {results_csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
