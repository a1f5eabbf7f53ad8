"""experiments/reproduce_table.py and reproduce_render.py: the grid, a tiny run, CSV and markdown, resuming."""

from __future__ import annotations

import csv
import importlib.util
import sys

import pytest

from tests.conftest import ROOT, make_rows, write_fer_csv

# Trainings run eagerly (conftest.eager_tensorflow): on a few dozen faces tracing costs more than training.
pytestmark = pytest.mark.usefixtures("eager_tensorflow")

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from experiments import reproduce_charts as charts  # noqa: E402
from experiments import reproduce_render as render  # noqa: E402


@pytest.fixture(scope="module")
def reproduce():
    spec = importlib.util.spec_from_file_location("reproduce_table", ROOT / "experiments" / "reproduce_table.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_grid_and_only(reproduce, tmp_path, capsys):
    cells = reproduce.grid(batchnorm_ablation=False, ferplus=True)
    ids = [c.id for c in cells]
    assert len(ids) == len(set(ids)) == 2 * (3 + 2 * 4) + 2
    assert "fer5:svm:raw:-" not in ids and "fer5:svm:landmarks:-" in ids and "ferplus:fernet:raw:bn" in ids
    assert len(reproduce.grid(batchnorm_ablation=True, ferplus=False)) == 2 * (3 + 4 * 4)
    assert [c.id for c in reproduce.select_cells(cells, "fer7:B:*,fer5:A:raw:bn")] == [
        "fer5:A:raw:bn", "fer7:B:raw:bn", "fer7:B:landmarks:bn", "fer7:B:landmarks_hog:bn",
        "fer7:B:landmarks_hog_windows:bn"]
    with pytest.raises(SystemExit, match="matches no cell"):
        reproduce.select_cells(cells, "fer9:*")


@pytest.mark.slow
def test_smoke_run_writes_csv_and_markdown_and_resumes(reproduce, tmp_path, capsys):
    csv_path = write_fer_csv(tmp_path / "fer.csv", make_rows((4, 2, 2), seed=3))
    common = ["--csv", str(csv_path), "--work-dir", str(tmp_path / "work"), "--out-dir", str(tmp_path / "out"),
              "--epochs", "1", "--no-ferplus-cells", "--verbose", "0"]
    assert reproduce.main([*common, "--only", "fer5:svm:landmarks:-,fer5:A:raw:bn"]) == 0
    with (tmp_path / "out" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["cell"] for r in rows] == ["fer5:A:raw:bn", "fer5:svm:landmarks:-"]  # grid order
    assert all(0 <= float(r["private_test_accuracy"]) <= 1 and r["n_classes"] == "5" for r in rows)
    assert rows[0]["epochs"] == "1" and rows[0]["n_train"] == "20" and rows[1]["svm_kernel"]
    # the learning curve and per-class recall, as evaluated: one PublicTest value per epoch, the best one kept
    curve = render.parse_curve(rows[0]["public_test_by_epoch"])
    assert len(curve) == 1 and curve[0] == pytest.approx(float(rows[0]["public_test_accuracy"]), abs=1e-5)
    assert 0 <= float(rows[0]["train_accuracy"]) <= 1
    recall = render.parse_recall(rows[0]["private_test_recall"])
    assert list(recall) == ["Angry", "Happy", "Sad", "Surprise", "Neutral"]
    assert all(0 <= v <= 1 for v in recall.values())
    markdown = (tmp_path / "out" / "RESULTS.md").read_text()
    assert "| CNN on raw pixels | – | " in markdown and "(72.4 %)" in markdown and "not run" in markdown
    assert "hardware:" in markdown and "--only" in markdown
    assert "](results.png)" in markdown
    assert (tmp_path / "out" / "results.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "## Per cell: learning curve and recall per class" in markdown and "| 5 expr. SVM, landmarks | " in markdown
    assert not (tmp_path / "out" / "learning_curves.png").exists()  # one epoch is no curve yet
    assert not list((tmp_path / "out").glob(".*partial"))
    capsys.readouterr()

    # a second run skips the finished cells and runs only the new one
    assert reproduce.main([*common, "--only", "fer5:*:raw:*,fer5:svm:landmarks:-,fer7:svm:landmarks_hog:-"]) == 0
    printed = capsys.readouterr().out
    assert "2 already in" in printed and "2 to run" in printed
    with (tmp_path / "out" / "results.csv").open() as handle:
        cells = [r["cell"] for r in csv.DictReader(handle)]
    assert cells == ["fer5:A:raw:bn", "fer5:svm:landmarks:-", "fer5:B:raw:bn", "fer7:svm:landmarks_hog:-"]
    assert (tmp_path / "work" / "data" / "fer7" / "meta.json").is_file()
    assert "## 7 expressions" in (tmp_path / "out" / "RESULTS.md").read_text()


def test_results_markdown_is_current_after_every_cell(reproduce, tmp_path, monkeypatch):
    """A run stopped mid-grid (the clock, a crash) leaves RESULTS.md with every finished cell."""
    csv_path = write_fer_csv(tmp_path / "fer.csv", make_rows((4, 2, 2), seed=4))
    real_run_cell = reproduce.run_cell
    calls = []

    def run_cell_then_stop(cell, data_dir, args):
        calls.append(cell.id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run_cell(cell, data_dir, args)

    monkeypatch.setattr(reproduce, "run_cell", run_cell_then_stop)
    with pytest.raises(KeyboardInterrupt):
        reproduce.main(["--csv", str(csv_path), "--work-dir", str(tmp_path / "work"), "--out-dir",
                        str(tmp_path / "out"), "--no-ferplus-cells", "--verbose", "0",
                        "--only", "fer5:svm:landmarks:-,fer5:svm:landmarks_hog:-"])
    markdown = (tmp_path / "out" / "RESULTS.md").read_text()
    assert "| + face landmarks | " in markdown and "(46.9 %)" in markdown
    landmarks_row = next(line for line in markdown.splitlines() if line.startswith("| + face landmarks |"))
    hog_row = next(line for line in markdown.splitlines() if line.startswith("| + landmarks + HOG |"))
    assert not landmarks_row.split("|")[2].strip().startswith("not run")
    assert hog_row.split("|")[2].strip().startswith("not run")
    assert not list((tmp_path / "out").glob(".*partial"))


def test_results_csv_from_before_the_hardware_column_is_upgraded(reproduce, tmp_path):
    """Old rows keep their values (hardware empty, shown as not recorded); the new row records its machine."""
    path = tmp_path / "results.csv"
    old_fields = [f for f in reproduce.CSV_FIELDS if f != "hardware"]
    old = {f: "" for f in old_fields} | {
        "cell": "fer5:svm:landmarks:-", "dataset": "fer5", "model": "svm", "feature_set": "landmarks",
        "epochs": "1", "svm_kernel": "rbf", "public_test_accuracy": "0.5", "private_test_accuracy": "0.4",
        "seconds": "10.0"}
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=old_fields)
        writer.writeheader()
        writer.writerow(old)
    new = old | {"cell": "fer7:svm:landmarks:-", "dataset": "fer7", "private_test_accuracy": "0.45",
                 "hardware": "Test CPU, 2 usable cores, no GPU"}
    reproduce.append_result(path, new)
    reproduce.append_result(path, new | {"cell": "fer7:svm:landmarks_hog:-"})  # plain append now
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(reproduce.CSV_FIELDS)
    assert [r["cell"] for r in rows] == ["fer5:svm:landmarks:-", "fer7:svm:landmarks:-", "fer7:svm:landmarks_hog:-"]
    assert rows[0]["hardware"] == "" and rows[0]["private_test_accuracy"] == "0.4"
    assert rows[1]["hardware"] == "Test CPU, 2 usable cores, no GPU"
    assert not list(tmp_path.glob(".*partial"))
    markdown = render.render_markdown(render.read_results(path), "python experiments/reproduce_table.py")
    assert "Test CPU, 2 usable cores, no GPU: 2 cells; not recorded" in markdown and ": 1 cell" in markdown
    assert "## Per cell" not in markdown  # no row has a learning curve


def test_learning_curves_table_and_chart(reproduce, tmp_path):
    """Rows with per-epoch PublicTest accuracy: the kept epoch in bold, recall per class, a chart per label set;
    rows from before the columns are left out of both."""
    base = {f: "" for f in reproduce.CSV_FIELDS} | {
        "n_classes": "5", "batchnorm": "True", "epochs": "3", "public_test_accuracy": "0.62",
        "private_test_accuracy": "0.6", "seconds": "10.0", "global_clipnorm": "5", "initializer": "tflearn"}
    rows = {
        "fer5:A:raw:bn": base | {"cell": "fer5:A:raw:bn", "dataset": "fer5", "model": "A", "feature_set": "raw",
                                 "best_epoch": "2", "public_test_by_epoch": "0.51234;0.62;0.61",
                                 "train_accuracy": "0.9", "private_test_recall": "Angry=0.5;Happy=0.81234"},
        "fer7:B:raw:bn": base | {"cell": "fer7:B:raw:bn", "dataset": "fer7", "model": "B", "feature_set": "raw",
                                 "best_epoch": "3"},
        "fer5:A:raw:nobn": base | {"cell": "fer5:A:raw:nobn", "dataset": "fer5", "model": "A", "feature_set": "raw",
                                   "batchnorm": "False", "best_epoch": "3", "public_test_by_epoch": "0.4;0.5;0.55",
                                   "private_test_accuracy": "0.55"},
        "fer5:B:raw:nobn": base | {"cell": "fer5:B:raw:nobn", "dataset": "fer5", "model": "B", "feature_set": "raw",
                                   "batchnorm": "False", "best_epoch": "1", "private_test_accuracy": "0.3"},
    }
    markdown = render.render_markdown(rows, "cmd")
    assert "| 5 expr. Model A, raw | 51.2, **62.0**, 61.0 | 90.0 | Angry 50.0, Happy 81.2 |" in markdown
    assert "| 5 expr. Model A, raw, no batch norm | 40.0, 50.0, **55.0** | – | – |" in markdown
    # the batch-norm ablation: with / without / the difference in points, '–' where the cell with it is missing
    assert "| 5 expr. Model A, raw | 60.0 % | 55.0 % | -5.0 | – |" in markdown
    assert "| 5 expr. Model B, raw | not run | 30.0 % | – | – |" in markdown
    hog = {cell: rows[cell.replace("landmarks_hog", "raw")] | {"cell": cell, "feature_set": "landmarks_hog"}
           for cell in ("fer5:A:landmarks_hog:bn", "fer5:A:landmarks_hog:nobn")}
    assert "| 60.0 % | 55.0 % | -5.0 | 68.7 % / 66.8 % |" in render.render_markdown(rows | hog, "cmd")
    assert "7 expr. Model B" not in markdown and "](learning_curves.png)" in markdown
    path = charts.render_curves(rows, tmp_path / "learning_curves.png")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and not list(tmp_path.glob(".*partial"))
    assert charts.render_curves({"fer7:B:raw:bn": rows["fer7:B:raw:bn"]}, tmp_path / "none.png") is None


def test_a_results_csv_of_another_recipe_is_refused_not_redone(reproduce, tmp_path, monkeypatch, capsys):
    """One results.csv holds one recipe: finished cells are skipped, and asking for another recipe on cells already
    measured is refused with one line naming the file, the cell and what differs (nothing runs, nothing is
    rewritten)."""
    path = tmp_path / "out" / "results.csv"
    path.parent.mkdir()
    base = {f: "" for f in reproduce.CSV_FIELDS} | {"dataset": "fer5", "n_classes": "5", "epochs": "8",
                                                   "public_test_accuracy": "0.5", "private_test_accuracy": "0.4",
                                                   "seconds": "10.0"}
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=reproduce.CSV_FIELDS)
        writer.writeheader()
        writer.writerow(base | {"cell": "fer5:A:raw:bn", "model": "A", "feature_set": "raw", "batchnorm": "True",
                                "global_clipnorm": "5", "initializer": "tflearn"})
        writer.writerow(base | {"cell": "fer5:svm:landmarks:-", "model": "svm", "feature_set": "landmarks",
                                "svm_kernel": "rbf"})
    before = path.read_bytes()
    ran = []
    monkeypatch.setattr(reproduce, "run_cell", lambda cell, data_dir, args: ran.append(cell.id))
    monkeypatch.setattr(reproduce, "prepare_data", lambda dataset, args: tmp_path)
    csv_path = write_fer_csv(tmp_path / "fer.csv", make_rows((2, 1, 1), seed=5))
    common = ["--csv", str(csv_path), "--out-dir", str(tmp_path / "out"), "--no-ferplus-cells",
              "--only", "fer5:A:raw:bn,fer5:svm:landmarks:-"]
    assert reproduce.main(common) == 0 and ran == []  # both measured with this recipe
    with pytest.raises(SystemExit) as exit_info:
        reproduce.main([*common, "--global-clipnorm", "0", "--initializer", "keras"])
    assert str(exit_info.value) == (f"{path}: fer5:A:raw:bn was measured with another recipe (global_clipnorm 5 -> 0, "
                                    "initializer tflearn -> keras); give another --out-dir to measure this one")
    assert ran == [] and path.read_bytes() == before
    markdown = (tmp_path / "out" / "RESULTS.md").read_text()
    assert "40.0 % (72.4 %)" in markdown and not any(mark in markdown for mark in "†‡§")
    assert "5: 1 cell" in markdown and "tflearn (2016): 1 cell" in markdown


def test_results_md_says_what_is_known_and_not_about_the_gap(reproduce):
    """The gap section is computed from the rows: the range, each cell's gap, the raw-pixel cells, the SVMs."""
    base = {f: "" for f in reproduce.CSV_FIELDS} | {"dataset": "fer5", "n_classes": "5", "batchnorm": "True",
                                                   "epochs": "8", "best_epoch": "8", "seconds": "1",
                                                   "public_test_accuracy": "0.6"}
    rows = {r["cell"]: r for r in (
        base | {"cell": "fer5:A:raw:bn", "model": "A", "feature_set": "raw", "private_test_accuracy": "0.70"},
        base | {"cell": "fer5:B:landmarks:bn", "model": "B", "feature_set": "landmarks", "best_epoch": "5",
                "private_test_accuracy": "0.714"},
        base | {"cell": "fer5:svm:landmarks:-", "model": "svm", "feature_set": "landmarks", "batchnorm": "",
                "private_test_accuracy": "0.50"},
    )}
    markdown = render.render_markdown(rows, "cmd")
    # original: A raw 72.4, B landmarks 74.4, SVM landmarks 46.9
    assert "## Why the 5-expression CNN cells sit 2.4-3.0 points under the original's" in markdown
    assert "Per cell, in points: Model A raw pixels 2.4, Model B + landmarks 3.0." in markdown
    assert "on raw pixels Model A is 2.4 points under" in markdown
    assert "+3.1 to +3.1 points from the original's SVM numbers" in markdown
    assert "The last epoch was the best on PublicTest in 1 of the 2 cells" in markdown
    assert "Not known:" in markdown and "have not been run for 13 epochs" in markdown
    assert "## Why" not in render.render_markdown({"fer5:svm:landmarks:-": rows["fer5:svm:landmarks:-"]}, "cmd")


def test_reproduce_render_rewrites_the_docs_from_results_csv(tmp_path):
    """experiments/reproduce_render.py renders the committed results.csv without training, keeping its command."""
    import shutil
    import subprocess

    shutil.copy(ROOT / "docs" / "results.csv", tmp_path / "results.csv")
    shutil.copy(ROOT / "docs" / "RESULTS.md", tmp_path / "RESULTS.md")
    done = subprocess.run([sys.executable, str(ROOT / "experiments" / "reproduce_render.py"), "--out-dir",
                           str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "RESULTS.md").read_text() == (ROOT / "docs" / "RESULTS.md").read_text()  # docs are current
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")


def test_cell_configs_follow_the_2016_recipe(reproduce):
    """Models A/B: clipping 5.0, unscaled features and tflearn's initialisers by default; the flags change them;
    fernet keeps its recipe."""
    args = reproduce.parse_args(["--list"])
    cfg = reproduce.cell_config(reproduce.Cell("fer7", "B", "landmarks_hog_windows"), args)
    assert cfg.hyperparams.global_clipnorm == 5.0 and cfg.network.standardize_features is False
    assert cfg.network.initializer == "tflearn"
    assert reproduce.cell_recipe(reproduce.Cell("fer7", "A", "raw"), args) == {
        "global_clipnorm": "5", "standardize_features": "", "initializer": "tflearn"}
    assert reproduce.cell_recipe(reproduce.Cell("fer7", "svm", "landmarks"), args) == {
        "global_clipnorm": "", "standardize_features": "", "initializer": ""}
    assert reproduce.cell_recipe(reproduce.Cell("ferplus", "fernet", "raw"), args) == {
        "global_clipnorm": "0", "standardize_features": "", "initializer": ""}
    args = reproduce.parse_args(["--list", "--standardize-features", "--global-clipnorm", "1", "--initializer",
                                 "keras"])
    assert reproduce.cell_recipe(reproduce.Cell("fer5", "A", "landmarks"), args) == {
        "global_clipnorm": "1", "standardize_features": "True", "initializer": "keras"}


def test_ferplus_table_says_how_each_model_was_trained(reproduce):
    rows = {r["cell"]: r for r in (
        {"cell": "ferplus:B:landmarks_hog_windows:bn", "dataset": "ferplus", "model": "B", "batchnorm": "True",
         "feature_set": "landmarks_hog_windows", "epochs": "8", "svm_kernel": "", "limit": "", "seconds": "60",
         "public_test_accuracy": "0.702", "private_test_accuracy": "0.694"},  # from before both recipe columns
        {"cell": "ferplus:fernet:raw:bn", "dataset": "ferplus", "model": "fernet", "batchnorm": "True",
         "feature_set": "raw", "epochs": "30", "svm_kernel": "", "limit": "", "seconds": "60",
         "global_clipnorm": "0", "standardize_features": "", "public_test_accuracy": "0.83",
         "private_test_accuracy": "0.818"},
    )}
    markdown = render.render_markdown(rows, "cmd")
    assert "| Model B | landmarks_hog_windows | 8 | – | – | – | 70.2 % | 69.4 % |" in markdown  # nothing recorded
    assert "| fernet | raw | 30 | off | – | – | 83.0 % | 81.8 % |" in markdown
