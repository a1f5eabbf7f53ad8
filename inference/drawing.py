"""Annotations for predictions: boxes and labels on BGR images, an fps overlay, per-face probability bar charts.

Drawing functions draw in place on a (h, w, 3) uint8 BGR image and return it. The bar chart uses matplotlib's
object API with the Agg canvas (no pyplot, no window, no global backend switch).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from inference.predictor import FacePrediction

BOX_COLOUR = (0, 200, 0)  # BGR
TEXT_COLOUR = (255, 255, 255)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _label(image: np.ndarray, text: str, x: int, y: int, colour: tuple[int, int, int], scale: float) -> None:
    """Text with a filled background whose bottom-left corner is at (x, y), kept inside the image."""
    thickness = max(1, round(scale * 2))
    (tw, th), baseline = cv2.getTextSize(text, FONT, scale, thickness)
    x = int(np.clip(x, 0, max(0, image.shape[1] - tw - 4)))
    y = int(np.clip(y, th + baseline + 4, image.shape[0]))
    cv2.rectangle(image, (x, y - th - baseline - 4), (x + tw + 4, y), colour, cv2.FILLED)
    cv2.putText(image, text, (x + 2, y - baseline - 2), FONT, scale, TEXT_COLOUR, thickness, cv2.LINE_AA)


def draw_predictions(
    image: np.ndarray,
    predictions: Sequence[FacePrediction],
    *,
    show_confidence: bool = True,
    colour: tuple[int, int, int] = BOX_COLOUR,
) -> np.ndarray:
    """Draw each face's box and "Emotion 0.87" above it (below it when the box touches the top edge)."""
    scale = max(0.4, min(image.shape[:2]) / 700)
    thickness = max(1, round(scale * 2))
    for pred in predictions:
        x, y, w, h = pred.box
        cv2.rectangle(image, (x, y), (x + w, y + h), colour, thickness)
        text = f"{pred.emotion} {pred.confidence:.2f}" if show_confidence else pred.emotion
        _, th = cv2.getTextSize(text, FONT, scale, thickness)[0]
        label_y = y - 1 if y > th + 10 else y + h + th + 10
        _label(image, text, x, label_y, colour, scale)
    return image


def draw_fps(image: np.ndarray, fps: float) -> np.ndarray:
    """Write "NN.N fps" in the top-left corner."""
    scale = max(0.4, min(image.shape[:2]) / 700)
    _label(image, f"{fps:.1f} fps", 4, 4, (60, 60, 60), scale)
    return image


def plot_probabilities(predictions: Sequence[FacePrediction], path: str | Path, *, title: str | None = None) -> Path:
    """Write one row per face to ``path`` (png, pdf, svg...): the face crop the model saw and its probability bars.

    Returns the path written. An empty ``predictions`` writes a figure saying no face was found.
    """
    from matplotlib.figure import Figure

    path = Path(path)
    rows = max(1, len(predictions))
    fig = Figure(figsize=(7, 2.4 * rows), layout="constrained")
    if title:
        fig.suptitle(title)
    if not predictions:
        fig.text(0.5, 0.5, "no face found", ha="center", va="center")
    for i, pred in enumerate(predictions):
        face_ax = fig.add_subplot(rows, 3, 3 * i + 1)
        if pred.face is not None:
            face_ax.imshow(pred.face, cmap="gray", vmin=0, vmax=255)
        face_ax.set_axis_off()
        face_ax.set_title(f"face {i + 1} at {tuple(pred.box)}", fontsize=8)
        bar_ax = fig.add_subplot(rows, 3, (3 * i + 2, 3 * i + 3))
        names = list(pred.probabilities)
        values = [pred.probabilities[n] for n in names]
        colours = ["tab:orange" if n == pred.emotion else "tab:blue" for n in names]
        bar_ax.barh(names, values, color=colours)
        bar_ax.invert_yaxis()
        bar_ax.set_xlim(0, 1)
        bar_ax.set_xlabel("probability")
        for y, value in enumerate(values):
            bar_ax.text(min(value + 0.01, 0.9), y, f"{value:.2f}", va="center", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
