"""Reproduce the original repository's results table with this project's own convert and train code.

The grid: expressions {5: Angry, Happy, Sad, Surprise, Neutral (0,3,4,5,6); 7: all} x models {SVM, A, B} x feature
sets {raw, landmarks, landmarks_hog, landmarks_hog_windows} (SVM on raw pixels is "–", as in the original), batch
norm after the conv layers on (and off with --batchnorm-ablation), plus FER+ cells (Model B and the bundled fernet
on the FER+ majority labels, 8 classes; fernet with the bundled model's recipe, FERNET_RECIPE) when the FER+ file is
present. Each cell: data.convert.convert (once per label set) -> training.trainer.train (select on PublicTest) ->
inference.evaluation.evaluate_run (PrivateTest, once).

Resumable: every finished cell appends a row to the results CSV and is skipped on the next run; an interrupted cell
continues from its run directory's checkpoint (train's --resume). results.csv records each Keras cell's recipe
beyond its id, all defaulting to the 2016 code's behaviour: gradient clipping (``global_clipnorm``, 5.0), Models
A/B's weight initialisation (``initializer``, tflearn's defaults) and, for Models A/B with a feature branch, whether
the landmark/HOG features are standardised (``standardize_features``, off: the 2016 code fed them unscaled). A
finished cell measured with another recipe (rows from before a column trained without clipping, with Keras'
Glorot initialisation and standardised features) is run again and its row replaced. Writes RESULTS.md (our
PrivateTest accuracy beside the original numbers, with hardware, wall time and the command; per cell, PublicTest
accuracy after every epoch and PrivateTest recall per class), results.png (the table as a bar chart),
learning_curves.png (PublicTest accuracy per epoch, one line per cell) and results.csv to --out-dir.

    # the full grid (hours on a CPU): docs/RESULTS.md, results.png, learning_curves.png, results.csv; work files
    # in runs/reproduce/
    python experiments/reproduce_table.py
    # with the batch-norm ablation, only Model B
    python experiments/reproduce_table.py --batchnorm-ablation --only 'fer5:B:*'
    # smoke run: 1 epoch, at most ~600 faces per split, outputs in a temporary folder
    python experiments/reproduce_table.py --epochs 1 --limit 600 --work-dir /tmp/rt --out-dir /tmp/rt

SVM cells use models.svm (StandardScaler -> scikit-learn SVC), RBF kernel by default as the original. Measured on
this project's 2-core CPU with 2,728 landmarks + sliding-window HOG features, 7 classes (single-threaded BLAS):
2,000 Training faces: fit 3.3 s, predict 3,589 PublicTest faces 14 s (PublicTest 42.9 %); 4,000 faces (CPU shared
with a smoke run, so ~2-3x inflated): fit 43 s, predict 80 s (45.6 %). Extrapolated to 28,709 faces (fit ~n^2,
predict ~n): ~15 min fit, ~3 min per 3,589-face split, and ~25 min for the Training accuracy that
training.trainer reports, i.e. roughly 45-60 min per SVM cell. LinearSVC (primal) was not faster at these sizes
(16 s / 121 s fit) and less accurate (35.6 % / 37.2 %), so RBF stays the default. Measured full cells (results.csv,
seconds): 5 classes landmarks + sliding-window HOG 20 min; 7 classes 66 min on a 2-core machine without AVX-512
(fit and PublicTest 58 min, sharing the CPU with a Keras run); landmarks and landmarks + HOG cells 1-2 min. Keras
cells on that machine: 10-12 min per 7-class epoch alone (benchmarks/bench_train.py), 16 min beside an SVM fit,
so 1.5-2 h per 8-epoch cell; on a 2-core machine with AVX-512, 72-85 s (Model A) and 107-121 s (Model B) per
7-class epoch, 10-15 min per cell.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import math
import os
import platform
import shlex
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

DEFAULT_CSV = ROOT.parent / "shared" / "data" / "fer2013.csv.gz"
DEFAULT_FERPLUS = ROOT.parent / "shared" / "data" / "fer2013new.csv"
FIVE = (0, 3, 4, 5, 6)
FEATURE_ROWS = {  # feature set -> the original table's row label
    "raw": "CNN on raw pixels",
    "landmarks": "+ face landmarks",
    "landmarks_hog": "+ landmarks + HOG",
    "landmarks_hog_windows": "+ landmarks + HOG sliding window",
}
# The original README's numbers (5 expressions, batch norm on): feature set -> {model: accuracy %}.
ORIGINAL = {
    "raw": {"svm": None, "A": 72.4, "B": 73.5},
    "landmarks": {"svm": 46.9, "A": 73.5, "B": 74.4},
    "landmarks_hog": {"svm": 55.0, "A": 68.7, "B": 73.2},
    "landmarks_hog_windows": {"svm": 59.4, "A": 71.4, "B": 75.1},
}
ORIGINAL_SEVEN = 61.4  # its best model on all 7 expressions
# its batch-norm ablation (an earlier version of its README): "CNN + Face landmarks + HOG" 66.8 % without batch norm,
# 68.7 % with (Model A, 5 expressions); no other cell was reported both ways
ORIGINAL_NO_BATCHNORM = {("fer5", "A", "landmarks_hog"): 66.8}
# fernet cells train with the bundled model's recipe (README), not the 2016 hyperparameters; --epochs overrides 80.
FERNET_RECIPE: dict[str, object] = {
    "width": 16, "epochs": 80, "batch_size": 128, "optimizer": "momentum", "optimizer_param": 0.9,
    "learning_rate": 0.05, "schedule": "cosine", "warmup_epochs": 1.0, "weight_decay": 0.0005,
    "label_smoothing": 0.1, "augment": True, "random_erasing": 0.3, "keep_prob": 0.7,
    "global_clipnorm": 0.0,  # the recipe as measured (README), without the 2016 code's clipping
}
MODEL_COLUMNS = {"svm": "SVM", "A": "Model A", "B": "Model B", "fernet": "fernet"}
CSV_FIELDS = (
    "cell", "dataset", "n_classes", "model", "feature_set", "batchnorm", "epochs", "limit", "svm_kernel",
    "global_clipnorm", "standardize_features", "initializer", "public_test_accuracy", "private_test_accuracy",
    "best_epoch", "n_train", "seconds", "finished", "hardware",
    # the learning curve and per-class results: PublicTest accuracy after each epoch ("0.48864;0.61047;..."), Training
    # accuracy after the last epoch, PrivateTest recall per class ("Angry=0.55397;Happy=0.82935;...")
    "public_test_by_epoch", "train_accuracy", "private_test_recall",
)


@dataclass(frozen=True)
class Cell:
    """One experiment: ``dataset`` fer5 | fer7 | ferplus, a model, a feature set, batch norm on/off."""

    dataset: str
    model: str
    feature_set: str
    batchnorm: bool = True

    @property
    def id(self) -> str:
        bn = "-" if self.model == "svm" else ("bn" if self.batchnorm else "nobn")
        return f"{self.dataset}:{self.model}:{self.feature_set}:{bn}"


def grid(batchnorm_ablation: bool, ferplus: bool) -> list[Cell]:
    """Every cell, in run order (5 expressions first, as the table reads)."""
    cells = []
    bns = (True, False) if batchnorm_ablation else (True,)
    for dataset in ("fer5", "fer7"):
        for feature_set in FEATURE_ROWS:
            if feature_set != "raw":
                cells.append(Cell(dataset, "svm", feature_set))
            cells += [Cell(dataset, m, feature_set, bn) for m in ("A", "B") for bn in bns]
    if ferplus:
        cells += [Cell("ferplus", "B", "landmarks_hog_windows"), Cell("ferplus", "fernet", "raw")]
    return cells


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from parameters import INITIALIZERS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV, help=f"fer2013.csv(.gz) (default {DEFAULT_CSV})")
    parser.add_argument("--ferplus", type=Path, default=DEFAULT_FERPLUS,
                        help="fer2013new.csv for the FER+ cells (default: the shared copy; skipped when absent)")
    parser.add_argument("--no-ferplus-cells", dest="ferplus_cells", action="store_false",
                        help="leave out the FER+ cells")
    parser.add_argument("--work-dir", type=Path, default=ROOT / "runs" / "reproduce",
                        help="converted data and run directories (default runs/reproduce)")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs",
                        help="where RESULTS.md and results.csv go (default docs/; use a temp dir for smoke runs)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per Keras cell (default: Config's, 13)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="at most about N faces per split (N / classes per class): a quick smoke run")
    parser.add_argument("--only", default=None, metavar="PATTERNS",
                        help="comma-separated glob patterns on cell ids DATASET:MODEL:FEATURES:BN, e.g. "
                             "'fer5:B:*,fer7:*:raw:bn' (list them with --list)")
    parser.add_argument("--batchnorm-ablation", action=argparse.BooleanOptionalAction, default=False,
                        help="also train Models A/B without batch norm after the conv layers (default: off)")
    parser.add_argument("--global-clipnorm", type=float, default=None, metavar="NORM",
                        help="gradient clipping of the Models A/B cells (default: Config's, 5.0 as the 2016 code; 0 "
                             "off). Finished cells measured with another value are run again and replaced")
    parser.add_argument("--standardize-features", action=argparse.BooleanOptionalAction, default=False,
                        help="standardise the landmark/HOG inputs of the Models A/B cells with Training statistics, "
                             "as train.py does by default (default: off, unscaled as the 2016 code). Finished cells "
                             "measured the other way are run again and replaced")
    parser.add_argument("--initializer", choices=list(INITIALIZERS), default="tflearn",
                        help="weight initialisation of the Models A/B cells (default tflearn: the 2016 code's, "
                             "truncated normal 0.02 for FC layers; keras: Glorot, train.py's default). Finished cells "
                             "measured the other way are run again and replaced")
    parser.add_argument("--svm-kernel", choices=["rbf", "linear", "poly", "sigmoid"], default="rbf",
                        help="kernel of the SVM cells' SVC (default rbf, as the original; cost in the docstring)")
    parser.add_argument("--workers", type=int, default=1, help="processes for landmark extraction (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--list", action="store_true", help="print the cell ids and exit")
    parser.add_argument("--verbose", type=int, choices=[0, 1, 2], default=2, help="training output (default 2)")
    args = parser.parse_args(argv)
    if args.epochs is not None and args.epochs < 1:
        parser.error("--epochs must be >= 1")
    if args.global_clipnorm is not None and args.global_clipnorm < 0:
        parser.error("--global-clipnorm must be >= 0 (0: off)")
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


def cell_config(cell: Cell, args: argparse.Namespace):
    """The parameters.Config one cell trains with."""
    from parameters import Config

    overrides: dict[str, object] = {
        "model": cell.model, "feature_set": cell.feature_set, "seed": args.seed,
        "use_batchnorm_after_conv_layers": cell.batchnorm, "svm_kernel": args.svm_kernel,
    }
    if cell.model in ("A", "B"):
        overrides["standardize_features"] = args.standardize_features
        overrides["initializer"] = args.initializer
        if args.global_clipnorm is not None:
            overrides["global_clipnorm"] = args.global_clipnorm
    if cell.model == "fernet":
        overrides.update(FERNET_RECIPE)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    return Config().with_overrides(overrides)


def _has_feature_branch(model: str, feature_set: str) -> bool:
    return model in ("A", "B") and feature_set != "raw"


def _recipe_fields(cell: Cell, config) -> dict[str, str]:
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
    """A row's recipe fields. Rows from before a column was added trained without clipping ("0"), with
    standardised features ("True") and Keras' initialisation ("keras"), the defaults of those days."""
    return {
        "global_clipnorm": "" if row["model"] == "svm" else (row.get("global_clipnorm") or "0"),
        "standardize_features": ((row.get("standardize_features") or "True")
                                 if _has_feature_branch(row["model"], row["feature_set"]) else ""),
        "initializer": (row.get("initializer") or "keras") if row["model"] in ("A", "B") else "",
    }


def _recipe_change(old: dict[str, str], new: dict[str, str]) -> str:
    """``global_clipnorm 0 -> 5, standardize_features True -> False``: the fields that differ."""
    return ", ".join(f"{key} {old[key]} -> {new[key]}" for key in new if old[key] != new[key])


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
        "svm_kernel": args.svm_kernel if cell.model == "svm" else "", **recipe,
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


def parse_curve(value: str) -> list[float]:
    """public_test_by_epoch -> accuracies (empty for rows from before the column)."""
    return [float(v) for v in value.split(";")] if value else []


def parse_recall(value: str) -> dict[str, float]:
    """private_test_recall -> {class name: recall} (empty for rows from before the column)."""
    return {name: float(v) for name, v in (item.split("=") for item in value.split(";"))} if value else {}


def _n_train(data_dir: Path) -> int:
    from data.dataset import read_meta

    return sum(read_meta(data_dir)["counts"]["Training"].values())


def read_results(path: Path) -> dict[str, dict[str, str]]:
    """cell id -> row of the results CSV (empty when absent)."""
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        return {row["cell"]: row for row in csv.DictReader(handle)}


@contextmanager
def _replaced_atomically(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` once the block has finished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    yield tmp
    tmp.replace(path)


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
    with _replaced_atomically(path) as tmp, tmp.open("w", newline="") as handle:
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


# ------------------------------------------------------------------------------------------------- report


def _clip_label(clipnorm: str) -> str:
    return "off" if clipnorm == "0" else clipnorm


_SCALING_LABELS = {"False": "unscaled", "True": "standardised"}
_INIT_LABELS = {"keras": "Keras (Glorot)", "tflearn": "tflearn (2016)"}


def _marks(row: dict[str, str]) -> str:
    """" †" for a Model A/B cell trained without clipping, " ‡" for one with standardised features, " §" for one
    with Keras' initialisation."""
    recipe = row_recipe(row)
    return ((" †" if recipe["global_clipnorm"] == "0" else "")
            + (" ‡" if recipe["standardize_features"] == "True" else "")
            + (" §" if recipe["initializer"] == "keras" else ""))


def _pct(value: str | float | None) -> str:
    return "–" if value in (None, "") else f"{100 * float(value):.1f} %"


def _hardware_summary(rows: dict[str, dict[str, str]]) -> str:
    """Each machine the cells ran on, with its number of cells (rows from before the column: "not recorded")."""
    counts = Counter(r.get("hardware") or "" for r in rows.values())
    if not counts:
        return "–"
    return "; ".join(f"{hw or 'not recorded (cells run before results.csv had the column)'}: {n} cell{'s' * (n != 1)}"
                     for hw, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def render_markdown(rows: dict[str, dict[str, str]], command: str) -> str:
    """RESULTS.md: the 5- and 7-expression tables (ours beside the original), batch-norm ablation, FER+."""
    def cell(dataset: str, model: str, fs: str, bn: str) -> str:
        row = rows.get(Cell(dataset, model, fs, bn == "bn").id)
        if not row:
            return "–" if model == "svm" and fs == "raw" else "not run"
        return _pct(row["private_test_accuracy"]) + _marks(row)

    recipes = {cell_id: row_recipe(r) for cell_id, r in rows.items()}
    keras_cells = [recipes[c] for c, r in rows.items() if r["model"] in ("A", "B")]
    clipnorms = Counter(r["global_clipnorm"] for r in keras_cells)
    scalings = Counter(r["standardize_features"] for r in keras_cells if r["standardize_features"])
    initializers = Counter(r["initializer"] for r in keras_cells)

    total = sum(float(r["seconds"]) for r in rows.values())
    epochs = sorted({r["epochs"] for r in rows.values() if r["model"] != "svm"})
    limits = sorted({r["limit"] for r in rows.values()})
    out = [
        "# Results: the original table, reproduced",
        "",
        "PrivateTest accuracy (models selected on PublicTest; PrivateTest evaluated once), produced by",
        "`experiments/reproduce_table.py` through `data.convert.convert` and `training.trainer.train`.",
        "Our number first, the original repository's in brackets.",
        "",
        f"- latest command (runs are resumable and add the cells they were given; `--only` picks cells): `{command}`",
        f"- hardware, per cell in results.csv: {_hardware_summary(rows)}",
        f"- wall time of the cells: {total / 3600:.2f} h ({len(rows)} cells); epochs per Keras cell: "
        f"{', '.join(map(str, epochs)) or '–'}; --limit: {', '.join(str(x) or 'none' for x in limits) or 'none'}",
        f"- SVM: {', '.join(sorted({r['svm_kernel'] for r in rows.values() if r['svm_kernel']})) or '–'} kernel",
        "- Models A/B, gradient clipping to a global norm (`global_clipnorm`; the 2016 code clipped at 5.0, "
        "tflearn's default): " + ("; ".join(f"{_clip_label(c)}: {n} cell{'s' * (n != 1)}"
                                           for c, n in sorted(clipnorms.items())) or "–"),
        "- Models A/B with landmark/HOG features, feature inputs (`standardize_features`; the 2016 code fed them "
        "unscaled): " + ("; ".join(f"{_SCALING_LABELS[s]}: {n} cell{'s' * (n != 1)}"
                                    for s, n in sorted(scalings.items())) or "–"),
        "- Models A/B, weight initialisation (`initializer`; the 2016 code had tflearn's defaults): "
        + ("; ".join(f"{_INIT_LABELS[i]}: {n} cell{'s' * (n != 1)}" for i, n in sorted(initializers.items())) or "–"),
        "",
        "![PrivateTest accuracy per cell: ours as bars, the original's as black ticks](results.png)",
        "",
    ]
    for dataset, title in (("fer5", "5 expressions (Angry, Happy, Sad, Surprise, Neutral)"),
                           ("fer7", "7 expressions")):
        out += [f"## {title}", "", "| experiment | SVM | Model A | Model B |", "| --- | --- | --- | --- |"]
        for fs, label in FEATURE_ROWS.items():
            values = []
            for model in ("svm", "A", "B"):
                ours = cell(dataset, model, fs, "bn")
                original = ORIGINAL[fs][model] if dataset == "fer5" else None
                values.append(ours if original is None else f"{ours} ({original} %)")
            out.append(f"| {label} | " + " | ".join(values) + " |")
        if dataset == "fer7":
            out += ["", f"The original reports {ORIGINAL_SEVEN} % for its best model on all 7 expressions."]
        marks = "".join(_marks(r) for r in rows.values() if r["dataset"] == dataset)
        if "†" in marks:
            out += ["", "† trained without gradient clipping (`global_clipnorm` 0, before we found that the 2016 "
                    "code clipped at 5.0); the default run redoes these cells with clipping."]
        if "‡" in marks:
            out += ["", "‡ landmark/HOG features standardised with Training statistics (the 2016 code fed them "
                    "unscaled, as the default run now does); the default run redoes these cells."]
        if "§" in marks:
            out += ["", "§ Keras' Glorot weight initialisation (the 2016 code had tflearn's: truncated normal, "
                    "stddev 0.02, for FC layers; fan-in uniform scaling for convolutions); the default run redoes "
                    "these cells."]
        out.append("")
    ablation = [r for r in rows.values() if r["batchnorm"] == "False"]
    if ablation:
        out += ["## Batch norm after the conv layers: on / off", "",
                "PrivateTest accuracy of each cell trained with and without batch norm after the conv layers "
                "(`--batchnorm-ablation`), otherwise alike; the difference in points, without minus with; the "
                "original's where it reported the cell both ways.", "",
                "| cell | with batch norm | without | difference | original: with / without |",
                "| --- | --- | --- | --- | --- |"]
        for r in _grid_order({r["cell"]: r for r in ablation}):
            on = rows.get(r["cell"].replace(":nobn", ":bn"))
            with_bn = _pct(on["private_test_accuracy"]) if on else "not run"
            diff = (f"{100 * (float(r['private_test_accuracy']) - float(on['private_test_accuracy'])):+.1f}"
                    if on else "–")
            # the cell's shared label (with its recipe marks), less the ", no batch norm" the column heads say
            name = f"{_DATASET_LABELS.get(r['dataset'], r['dataset'])} {_cell_label(r | {'batchnorm': 'True'})}"
            original = ORIGINAL_NO_BATCHNORM.get((r["dataset"], r["model"], r["feature_set"]))
            original_cell = (f"{ORIGINAL[r['feature_set']][r['model']]} % / {original} %" if original is not None
                             else "–")
            out.append(f"| {name} | {with_bn} | {_pct(r['private_test_accuracy'])} | {diff} | {original_cell} |")
        out.append("")
    ferplus = [r for r in rows.values() if r["dataset"] == "ferplus"]
    if ferplus:
        out += ["## FER+ (majority-vote labels, 8 classes; published FER+ results ~85-90 %)", "",
                "| model | features | epochs | gradient clipping | feature inputs | initialisation | PublicTest | "
                "PrivateTest |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        out += [f"| {MODEL_COLUMNS.get(r['model'], r['model'])} | {r['feature_set']} | {r['epochs']} | "
                f"{_clip_label(recipes[r['cell']]['global_clipnorm'])} | "
                f"{_SCALING_LABELS.get(recipes[r['cell']]['standardize_features'], '–')} | "
                f"{_INIT_LABELS.get(recipes[r['cell']]['initializer'], '–')} | "
                f"{_pct(r['public_test_accuracy'])} | {_pct(r['private_test_accuracy'])} |" for r in ferplus]
        out.append("")
    out += _curve_section(rows)
    out += ["All cells, with PublicTest accuracy, best epoch, seconds and hardware: `results.csv` beside this file.",
            ""]
    return "\n".join(out)


_DATASET_LABELS = {"fer5": "5 expr.", "fer7": "7 expr.", "ferplus": "FER+"}


def _grid_order(rows: dict[str, dict[str, str]]) -> list[dict[str, str]]:
    """The rows in the grid's order (5 expressions, 7, then FER+), any other cell last."""
    order = {c.id: i for i, c in enumerate(grid(batchnorm_ablation=True, ferplus=True))}
    return sorted(rows.values(), key=lambda r: order.get(r["cell"], len(order)))


def _cell_label(row: dict[str, str]) -> str:
    """``Model A, raw`` (``, no batch norm``) with the row's recipe marks: the per-cell table's and chart's name."""
    return (f"{MODEL_COLUMNS.get(row['model'], row['model'])}, {row['feature_set']}"
            f"{'' if row['batchnorm'] != 'False' else ', no batch norm'}{_marks(row)}")


def _curve_section(rows: dict[str, dict[str, str]]) -> list[str]:
    """The per-cell table: PublicTest accuracy after each epoch (the kept epoch in bold), Training accuracy at the
    end, PrivateTest recall per class. Empty when no row has those columns yet."""
    with_curves = [r for r in _grid_order(rows) if r.get("public_test_by_epoch") or r.get("private_test_recall")]
    if not with_curves:
        return []
    out = ["## Per cell: learning curve and recall per class", "",
           "PublicTest accuracy after each epoch (bold: the epoch whose model was kept and evaluated on PrivateTest), "
           "Training accuracy after the last epoch, and PrivateTest recall per class. Cells measured before "
           "results.csv had these columns are left out.", "",
           "![PublicTest accuracy per epoch, one line per cell](learning_curves.png)", "",
           "| cell | PublicTest % by epoch | Training % at the end | PrivateTest recall % |",
           "| --- | --- | --- | --- |"]
    for r in with_curves:
        best = int(r["best_epoch"] or 0)
        curve = ", ".join(f"**{100 * v:.1f}**" if epoch == best else f"{100 * v:.1f}"
                          for epoch, v in enumerate(parse_curve(r.get("public_test_by_epoch", "")), 1))
        train = r.get("train_accuracy")
        recall = ", ".join(f"{name} {100 * v:.1f}"
                           for name, v in parse_recall(r.get("private_test_recall", "")).items())
        name = f"{_DATASET_LABELS.get(r['dataset'], r['dataset'])} {_cell_label(r)}"
        out.append(f"| {name} | {curve or '–'} | {f'{100 * float(train):.1f}' if train else '–'} | {recall or '–'} |")
    out.append("")
    return out


_FEATURE_STYLES = {"raw": "-", "landmarks": "--", "landmarks_hog": "-.", "landmarks_hog_windows": ":"}


def render_curves(rows: dict[str, dict[str, str]], path: Path) -> Path | None:
    """learning_curves.png: PublicTest accuracy per epoch of every Keras cell with a recorded curve, one panel per
    label set; colour: model, line style: feature set, thin with an x per epoch: no batch norm, a dot at the kept
    epoch. None (nothing written) when no row has a curve yet. Written atomically."""
    from matplotlib.figure import Figure

    curves = [(r, [100 * v for v in parse_curve(r.get("public_test_by_epoch", ""))]) for r in _grid_order(rows)
              if r["model"] != "svm"]
    curves = [(r, values) for r, values in curves if len(values) > 1]
    if not curves:
        return None
    datasets = list(dict.fromkeys(r["dataset"] for r, _ in curves))
    fig = Figure(figsize=(4.6 * len(datasets) + 1.5, 4.2), layout="constrained")
    axes = fig.subplots(1, len(datasets), sharey=True, squeeze=False)[0]
    for ax, dataset in zip(axes, datasets, strict=True):
        for r, values in (c for c in curves if c[0]["dataset"] == dataset):
            no_bn = r["batchnorm"] == "False"  # the ablation's cells: thinner, an x on every epoch
            line, = ax.plot(range(1, len(values) + 1), values, _FEATURE_STYLES.get(r["feature_set"], "-"),
                            color=_MODEL_COLOURS.get(r["model"], "tab:green"), label=_cell_label(r),
                            alpha=0.45 if _marks(r) else 1.0, linewidth=1.0 if no_bn else 1.5,
                            marker="x" if no_bn else None, markersize=4)
            best = int(r["best_epoch"] or 0)
            if 1 <= best <= len(values):
                ax.plot(best, values[best - 1], "o", color=line.get_color(), markersize=4)
        ax.set_title(_DATASET_LABELS.get(dataset, dataset).replace("expr.", "expressions"))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    axes[0].set_ylabel("PublicTest accuracy (%)")
    with _replaced_atomically(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return path


_MODEL_COLOURS = {"svm": "tab:gray", "A": "tab:blue", "B": "tab:orange"}


def render_figure(rows: dict[str, dict[str, str]], path: Path) -> Path:
    """results.png: PrivateTest accuracy per cell, ours as bars beside the original's numbers as black ticks; one
    panel for 5 and one for 7 expressions. Hatched bars: cells measured with an older recipe († ‡ §). Written
    atomically (matplotlib, no global backend)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    width = 0.26
    any_old = False
    for ax, dataset, title in zip(fig.subplots(1, 2, sharey=True), ("fer5", "fer7"),
                                  ("5 expressions", "7 expressions"), strict=True):
        for g, fs in enumerate(FEATURE_ROWS):
            for m, model in enumerate(("svm", "A", "B")):
                x = g + (m - 1) * width
                row = rows.get(Cell(dataset, model, fs).id)
                if row:
                    value, marks = 100 * float(row["private_test_accuracy"]), _marks(row)
                    old = bool(marks)
                    any_old |= old
                    ax.bar(x, value, width * 0.95, color=_MODEL_COLOURS[model], alpha=0.45 if old else 0.9,
                           hatch="//" if old else None, edgecolor="white" if old else None)
                    # the label at the bar's foot, clear of the original's tick (all of those are above 45 %)
                    ax.text(x, 1.5, f"{value:.1f}{marks.replace(' ', '')}", ha="center", va="bottom",
                            fontsize=7, rotation=90, color="black" if old or value < 15 else "white")
                elif not (model == "svm" and fs == "raw"):
                    ax.text(x, 1.5, "not run", ha="center", va="bottom", fontsize=6, rotation=90, color="0.4")
                original = ORIGINAL[fs][model] if dataset == "fer5" else None
                if original is not None:
                    ax.plot([x - width / 2, x + width / 2], [original, original], color="black", lw=2)
        if dataset == "fer7":
            ax.axhline(ORIGINAL_SEVEN, color="black", ls="--", lw=1)
            ax.text(1.5, ORIGINAL_SEVEN + 0.8, f"original's best model: {ORIGINAL_SEVEN} %", ha="center",
                    va="bottom", fontsize=7)
        ax.set_xticks(range(len(FEATURE_ROWS)),
                      ["raw pixels", "+ landmarks", "+ landmarks\n+ HOG", "+ landmarks\n+ HOG windows"])
        ax.set_ylim(0, 100)
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
    fig.axes[0].set_ylabel("PrivateTest accuracy (%)")
    handles = [Patch(color=_MODEL_COLOURS[m], label=MODEL_COLUMNS[m]) for m in ("svm", "A", "B")]
    if any_old:  # the hatched key only when a bar is hatched
        handles.append(Patch(facecolor="0.6", alpha=0.45, hatch="//", edgecolor="white", label="older recipe († ‡ §)"))
    handles.append(Line2D([], [], color="black", lw=2, label="original (2016)"))
    fig.axes[0].legend(handles=handles, loc="upper left", fontsize=7, ncols=2)
    with _replaced_atomically(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with_ferplus = args.ferplus_cells and args.ferplus.is_file()
    cells = select_cells(grid(args.batchnorm_ablation, with_ferplus), args.only)
    if args.list:
        print("\n".join(c.id for c in cells))
        return 0
    results_csv = args.out_dir / "results.csv"
    rows = read_results(results_csv)
    todo = [c for c in cells if c.id not in rows or row_recipe(rows[c.id]) != cell_recipe(c, args)]
    redo = [c for c in todo if c.id in rows]
    print(f"{len(cells)} cells, {len(cells) - len(todo)} already in {results_csv}, {len(todo)} to run", flush=True)
    if redo:
        print(f"{len(redo)} of them measured with another recipe, run again: "
              + ", ".join(f"{c.id} ({_recipe_change(row_recipe(rows[c.id]), cell_recipe(c, args))})" for c in redo),
              flush=True)
    command = shlex.join(["python", "experiments/reproduce_table.py", *(sys.argv[1:] if argv is None else argv)])
    markdown_path = args.out_dir / "RESULTS.md"

    def write_markdown() -> None:  # after every cell, so a stopped run leaves an up-to-date table
        # from the CSV, which also holds cells that another reproduce_table process appended meanwhile
        rows = read_results(results_csv)
        with _replaced_atomically(markdown_path) as tmp:
            tmp.write_text(render_markdown(rows, command))
        render_figure(rows, args.out_dir / "results.png")
        render_curves(rows, args.out_dir / "learning_curves.png")

    data_dirs: dict[str, Path] = {}
    for i, cell in enumerate(todo, 1):
        if cell.dataset not in data_dirs:
            data_dirs[cell.dataset] = prepare_data(cell.dataset, args)
        print(f"[{i}/{len(todo)}] {cell.id}", flush=True)
        row = run_cell(cell, data_dirs[cell.dataset], args)
        append_result(results_csv, row)
        print(f"[{i}/{len(todo)}] {cell.id}: PrivateTest {row['private_test_accuracy']:.4f} "
              f"(PublicTest {row['public_test_accuracy']:.4f}) in {row['seconds']:.0f} s", flush=True)
        write_markdown()
    if not todo:  # otherwise the last cell has just written them
        write_markdown()
    print(f"wrote {markdown_path}, {args.out_dir / 'results.png'}, {args.out_dir / 'learning_curves.png'} (once a "
          f"cell has a learning curve) and {results_csv}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
