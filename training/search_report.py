"""What a hyperparameter search reports: the trial rows, the CSV, best.json (``train.py --params``), the PNG, and
the progress lines printed as trials finish."""

from __future__ import annotations

import csv
import json
import math
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from parameters import OptimizerSearchSpace
from training.search_space import SEARCHED

CSV_COLUMNS: tuple[str, ...] = (
    "tid", "status", "public_test_accuracy", "loss", "time_s", *SEARCHED, "error", "trial_dir", "started",
)  # fmt: skip


def report_paths(out: Path) -> tuple[Path, Path]:
    """CSV and PNG next to best.json: ``best.json`` -> ``best_trials.csv``, ``best_trials.png``."""
    return out.with_name(f"{out.stem}_trials.csv"), out.with_name(f"{out.stem}_trials.png")


def finished_trials(trials: Any) -> list[dict[str, Any]]:
    """Trial documents whose evaluation ended (ok or failed), ordered by tid."""
    from hyperopt import JOB_STATE_DONE

    return sorted((t for t in trials.trials if t["state"] == JOB_STATE_DONE), key=lambda t: t["tid"])


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
