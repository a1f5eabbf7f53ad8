"""RESULTS.md from results.csv: the rendering half of reproduce_table.py (the charts: reproduce_charts.py).

Also the grid's shape (``Cell``, ``grid``) and the original repository's numbers, which both halves share.
Everything here reads results.csv rows (``read_results``: cell id -> row of strings) and writes files atomically;
nothing trains. Re-render without running a cell: ``python experiments/reproduce_render.py [--out-dir docs]``.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
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
MODEL_COLUMNS = {"svm": "SVM", "A": "Model A", "B": "Model B", "fernet": "fernet"}


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


# --------------------------------------------------------------------------------------------- results.csv


def parse_curve(value: str) -> list[float]:
    """public_test_by_epoch -> accuracies (empty for rows from before the column)."""
    return [float(v) for v in value.split(";")] if value else []


def parse_recall(value: str) -> dict[str, float]:
    """private_test_recall -> {class name: recall} (empty for rows from before the column)."""
    return {name: float(v) for name, v in (item.split("=") for item in value.split(";"))} if value else {}


def read_results(path: Path) -> dict[str, dict[str, str]]:
    """cell id -> row of the results CSV (empty when absent)."""
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        return {row["cell"]: row for row in csv.DictReader(handle)}


@contextmanager
def replaced_atomically(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` once the block has finished."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    yield tmp
    tmp.replace(path)


# ------------------------------------------------------------------------------------------------- report


_DATASET_LABELS = {"fer5": "5 expr.", "fer7": "7 expr.", "ferplus": "FER+"}
_SCALING_LABELS = {"False": "unscaled", "True": "standardised"}
_INIT_LABELS = {"keras": "Keras (Glorot)", "tflearn": "tflearn (2016)"}


def _clip_label(clipnorm: str) -> str:
    return "off" if clipnorm == "0" else clipnorm


def _pct(value: str | float | None) -> str:
    return "–" if value in (None, "") else f"{100 * float(value):.1f} %"


def _cells(n: int) -> str:
    return f"{n} cell{'s' * (n != 1)}"


def _counts(values: list[str], labels: dict[str, str] | None = None) -> str:
    """``5: 23 cells; 0: 1 cell`` for the recorded values of a recipe column (empty values left out)."""
    counts = Counter(v for v in values if v)
    return "; ".join(f"{(labels or {}).get(v, v)}: {_cells(n)}" for v, n in sorted(counts.items())) or "–"


def _hardware_summary(rows: dict[str, dict[str, str]]) -> str:
    """Each machine the cells ran on, with its number of cells (rows from before the column: "not recorded")."""
    counts = Counter(r.get("hardware") or "" for r in rows.values())
    if not counts:
        return "–"
    return "; ".join(f"{hw or 'not recorded (cells run before results.csv had the column)'}: {_cells(n)}"
                     for hw, n in sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _grid_order(rows: dict[str, dict[str, str]]) -> list[dict[str, str]]:
    """The rows in the grid's order (5 expressions, 7, then FER+), any other cell last."""
    order = {c.id: i for i, c in enumerate(grid(batchnorm_ablation=True, ferplus=True))}
    return sorted(rows.values(), key=lambda r: order.get(r["cell"], len(order)))


def gap_section(rows: dict[str, dict[str, str]]) -> list[str]:
    """What is known, and what is not, about the distance of the 5-expression CNN cells to the original's numbers.

    Every figure is computed from ``rows`` (and the original's table above); nothing here is a guess. Empty while no
    5-expression CNN cell has been run."""
    cnn = [r for r in _grid_order(rows) if r["dataset"] == "fer5" and r["model"] in ("A", "B")
           and r["batchnorm"] != "False"]
    if not cnn:
        return []
    gaps = sorted(((ORIGINAL[r["feature_set"]][r["model"]] - 100 * float(r["private_test_accuracy"]), r)
                   for r in cnn), key=lambda item: item[0])
    low, high = gaps[0][0], gaps[-1][0]
    direction = "under" if low > 0 else "around"
    out = [f"## Why the 5-expression CNN cells sit {low:.1f}-{high:.1f} points {direction} the original's", "",
           "Known (each from results.csv or this project's code):", ""]
    clip, scaled, init = (Counter(r.get(k, "") for r in cnn) for k in
                          ("global_clipnorm", "standardize_features", "initializer"))
    epochs = Counter(r["epochs"] for r in cnn)
    short = {"raw": "raw pixels", "landmarks": "+ landmarks", "landmarks_hog": "+ landmarks + HOG",
             "landmarks_hog_windows": "+ sliding-window HOG"}
    per_cell = ", ".join(f"{MODEL_COLUMNS[r['model']]} {short[r['feature_set']]} {gap:.1f}" for gap, r in gaps)
    out.append(f"- Per cell, in points: {per_cell}.")
    raw = [(gap, r) for gap, r in gaps if r["feature_set"] == "raw"]
    if raw:
        out.append("- The gap is there without any feature branch: on raw pixels "
                   + " and ".join(f"{MODEL_COLUMNS[r['model']]} is {gap:.1f} points under" for gap, r in raw)
                   + ", so landmarks and HOG cannot account for all of it. The one known difference in the features "
                   "(HOG block norm: scikit-image's L2-Hys here, the 2016 L1 norm there) carries the same "
                   "information in a linear probe (`experiments/bench_hog_norm.py`, within 2.4 points either way).")
    out.append("- The recipe is the 2016 code's in the respects this project has checked: its hyperparameters (the "
               "defaults in `parameters.py`), gradient clipping to a global norm of 5.0 (tflearn's default), "
               "landmark/HOG features fed unscaled and tflearn's weight initialisers. results.csv records the last "
               f"three per cell: clipping {_counts(list(clip.elements()))}; feature inputs "
               f"{_counts(list(scaled.elements()), _SCALING_LABELS)}; initialisation "
               f"{_counts(list(init.elements()), _INIT_LABELS)}.")
    last = sum(1 for r in cnn if r["best_epoch"] and r["best_epoch"] == r["epochs"])
    out.append(f"- Training budget: {', '.join(f'{_cells(n)} of {e} epochs' for e, n in sorted(epochs.items()))}; "
               "the 2016 code's default is 13 (`Training.epochs`). The last epoch was the best on PublicTest in "
               f"{last} of the {len(cnn)} cells.")
    out.append("- Protocol: each cell is one run, trained on Training, its model chosen on PublicTest, and PrivateTest "
               "evaluated once.")
    svm = [(100 * float(r["private_test_accuracy"]) - ORIGINAL[r["feature_set"]]["svm"], r)
           for r in _grid_order(rows) if r["dataset"] == "fer5" and r["model"] == "svm"
           and ORIGINAL[r["feature_set"]]["svm"] is not None]
    if svm:
        out.append(f"- The gap is not shared by every model: the SVM cells, on the same converted data and features, "
                   f"are {min(d for d, _ in svm):+.1f} to {max(d for d, _ in svm):+.1f} points from the original's "
                   "SVM numbers.")
    spread = max(abs(100 * (float(r["private_test_accuracy"]) - float(raw_row["private_test_accuracy"])))
                 for r in cnn for raw_row in cnn if raw_row["model"] == r["model"] and raw_row["feature_set"] == "raw")
    original_spread = max(abs(ORIGINAL[fs][m] - ORIGINAL["raw"][m]) for fs in FEATURE_ROWS for m in ("A", "B"))
    out.append(f"- No feature branch moves a model more than {spread:.1f} points from its raw-pixel cell; in the "
               f"original's table the branches move a model up to {original_spread:.1f} points.")
    seven = [100 * float(r["private_test_accuracy"]) for r in rows.values()
             if r["dataset"] == "fer7" and r["model"] in ("A", "B") and r["batchnorm"] != "False"]
    if seven:
        out.append(f"- On all 7 expressions the best CNN cell reaches {max(seven):.1f} % against the original's "
                   f"{ORIGINAL_SEVEN} % for its best 7-class model.")
    out += ["", "Not known:", "",
            "- Which split, which epoch's model and how many runs the original's numbers come from: this project has "
            "no record of how they were selected, so whether they were measured as ours are is not known.",
            f"- How much the {13 - max(int(e) for e in epochs)} epochs between this budget and the 2016 default "
            "would add: the 5-expression cells have not been run for 13 epochs.",
            "- The spread over seeds: each cell was run once, so how much of each gap is run-to-run variation has "
            "not been measured.",
            "- Whether other defaults of the 2016 libraries (tflearn and the TensorFlow of its day) differ from "
            "Keras 3's in ways that matter, e.g. batch-norm momentum and epsilon or the decay schedule's "
            "implementation: they have not been compared one by one.", ""]
    return out


def render_markdown(rows: dict[str, dict[str, str]], command: str) -> str:
    """RESULTS.md: the 5- and 7-expression tables (ours beside the original), what is known about the gap,
    the batch-norm ablation, FER+ and the per-cell curves."""
    def cell(dataset: str, model: str, fs: str, bn: str) -> str:
        row = rows.get(Cell(dataset, model, fs, bn == "bn").id)
        if not row:
            return "–" if model == "svm" and fs == "raw" else "not run"
        return _pct(row["private_test_accuracy"])

    keras_cells = [r for r in rows.values() if r["model"] in ("A", "B")]
    total = sum(float(r["seconds"]) for r in rows.values())
    epochs = sorted({r["epochs"] for r in rows.values() if r["model"] != "svm"})
    limits = sorted({r["limit"] for r in rows.values()})
    out = [
        "# Results: the original table, reproduced",
        "",
        "PrivateTest accuracy (models selected on PublicTest; PrivateTest evaluated once), produced by",
        "`experiments/reproduce_table.py` through `data.convert.convert` and `training.trainer.train`.",
        "Our number first, the original repository's in brackets. How to run it and what it costs:",
        "[REPRODUCING.md](REPRODUCING.md).",
        "",
        f"- latest command (runs are resumable and add the cells they were given; `--only` picks cells): `{command}`",
        f"- hardware, per cell in results.csv: {_hardware_summary(rows)}",
        f"- wall time of the cells: {total / 3600:.2f} h ({_cells(len(rows))}); epochs per Keras cell: "
        f"{', '.join(map(str, epochs)) or '–'}; --limit: {', '.join(str(x) or 'none' for x in limits) or 'none'}",
        f"- SVM: {', '.join(sorted({r['svm_kernel'] for r in rows.values() if r['svm_kernel']})) or '–'} kernel",
        "- Models A/B, gradient clipping to a global norm (`global_clipnorm`; the 2016 code clipped at 5.0, "
        "tflearn's default): " + _counts([_clip_label(r.get("global_clipnorm", "")) for r in keras_cells]),
        "- Models A/B with landmark/HOG features, feature inputs (`standardize_features`; the 2016 code fed them "
        "unscaled): " + _counts([r.get("standardize_features", "") for r in keras_cells], _SCALING_LABELS),
        "- Models A/B, weight initialisation (`initializer`; the 2016 code had tflearn's defaults): "
        + _counts([r.get("initializer", "") for r in keras_cells], _INIT_LABELS),
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
        out.append("")
        if dataset == "fer5":
            out += gap_section(rows)
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
            # the cell's shared label, less the ", no batch norm" the column heads say
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
                f"{_clip_label(r.get('global_clipnorm') or '–')} | "
                f"{_SCALING_LABELS.get(r.get('standardize_features', ''), '–')} | "
                f"{_INIT_LABELS.get(r.get('initializer', ''), '–')} | "
                f"{_pct(r['public_test_accuracy'])} | {_pct(r['private_test_accuracy'])} |" for r in ferplus]
        out.append("")
    out += _curve_section(rows)
    out += ["All cells, with PublicTest accuracy, best epoch, seconds and hardware: `results.csv` beside this file.",
            ""]
    return "\n".join(out)


def _cell_label(row: dict[str, str]) -> str:
    """``Model A, raw`` (``, no batch norm``): the per-cell table's and chart's name of a row."""
    return (f"{MODEL_COLUMNS.get(row['model'], row['model'])}, {row['feature_set']}"
            f"{'' if row['batchnorm'] != 'False' else ', no batch norm'}")


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


def render_all(results_csv: Path, out_dir: Path, command: str) -> None:
    """RESULTS.md, results.png and learning_curves.png in ``out_dir`` from ``results_csv`` (each atomically)."""
    from experiments.reproduce_charts import render_curves, render_figure

    rows = read_results(results_csv)
    with replaced_atomically(out_dir / "RESULTS.md") as tmp:
        tmp.write_text(render_markdown(rows, command))
    render_figure(rows, out_dir / "results.png")
    render_curves(rows, out_dir / "learning_curves.png")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=_ROOT / "docs",
                        help="folder of results.csv; RESULTS.md and the charts are rewritten there (default docs/)")
    parser.add_argument("--command", default=None,
                        help="the reproduce command to name in RESULTS.md (default: the one it names now)")
    args = parser.parse_args(argv)
    if not (args.out_dir / "results.csv").is_file():
        parser.error(f"--out-dir {args.out_dir}: no results.csv there")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results_csv = args.out_dir / "results.csv"
    command = args.command or _current_command(args.out_dir / "RESULTS.md")
    render_all(results_csv, args.out_dir, command)
    print(f"wrote {args.out_dir / 'RESULTS.md'}, results.png and learning_curves.png from {results_csv}")
    return 0


def _current_command(markdown: Path) -> str:
    """The latest command a RESULTS.md names (re-rendering keeps it), else the plain reproduce command."""
    if markdown.is_file():
        for line in markdown.read_text().splitlines():
            if line.startswith("- latest command") and "`" in line:
                return line.split("`")[-2]
    return shlex.join(["python", "experiments/reproduce_table.py"])


if __name__ == "__main__":
    if str(_ROOT) not in sys.path:  # run as a script: the charts import this module as experiments.reproduce_render
        sys.path.insert(0, str(_ROOT))
    sys.exit(main())
