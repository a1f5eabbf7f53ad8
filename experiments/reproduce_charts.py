"""results.png and learning_curves.png from results.csv rows (matplotlib, no global backend; written atomically)."""

from __future__ import annotations

from pathlib import Path

from experiments.reproduce_render import (
    _DATASET_LABELS,
    FEATURE_ROWS,
    MODEL_COLUMNS,
    ORIGINAL,
    ORIGINAL_SEVEN,
    Cell,
    _cell_label,
    _grid_order,
    parse_curve,
    replaced_atomically,
)

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
                            linewidth=1.0 if no_bn else 1.5,
                            marker="x" if no_bn else None, markersize=4)
            best = int(r["best_epoch"] or 0)
            if 1 <= best <= len(values):
                ax.plot(best, values[best - 1], "o", color=line.get_color(), markersize=4)
        ax.set_title(_DATASET_LABELS.get(dataset, dataset).replace("expr.", "expressions"))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    axes[0].set_ylabel("PublicTest accuracy (%)")
    with replaced_atomically(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return path


_MODEL_COLOURS = {"svm": "tab:gray", "A": "tab:blue", "B": "tab:orange"}


def render_figure(rows: dict[str, dict[str, str]], path: Path) -> Path:
    """results.png: PrivateTest accuracy per cell, ours as bars beside the original's numbers as black ticks; one
    panel for 5 and one for 7 expressions. Written atomically (matplotlib, no global backend)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    width = 0.26
    for ax, dataset, title in zip(fig.subplots(1, 2, sharey=True), ("fer5", "fer7"),
                                  ("5 expressions", "7 expressions"), strict=True):
        for g, fs in enumerate(FEATURE_ROWS):
            for m, model in enumerate(("svm", "A", "B")):
                x = g + (m - 1) * width
                row = rows.get(Cell(dataset, model, fs).id)
                if row:
                    value = 100 * float(row["private_test_accuracy"])
                    ax.bar(x, value, width * 0.95, color=_MODEL_COLOURS[model], alpha=0.9)
                    # the label at the bar's foot, clear of the original's tick (all of those are above 45 %)
                    ax.text(x, 1.5, f"{value:.1f}", ha="center", va="bottom", fontsize=7, rotation=90,
                            color="black" if value < 15 else "white")
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
    handles.append(Line2D([], [], color="black", lw=2, label="original (2016)"))
    fig.axes[0].legend(handles=handles, loc="upper left", fontsize=7, ncols=2)
    with replaced_atomically(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return path
