"""Output files of ``predict.py`` and ``predict_from_video.py``: never an input, one per input, written atomically.

Three rules, checked before any work is done:

- an output path never resolves to an input (the same name, a symlink to it, or a hard link): OutputPathError;
- with several inputs, each gets its own file in the output folder (:func:`destinations`): ``<stem><suffix>.png``,
  and where two inputs share a stem (``a.png``, ``a.jpg``) their extension is added (``a_png<suffix>.png``), then a
  counter if they still collide (``x/a.png``, ``y/a.png``);
- a file is written under a hidden temporary name in its folder and renamed when complete (:func:`atomic_path`), so a
  failure or Ctrl-C never leaves a truncated image or video under the final name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from errors import UserError

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv")  # containers OpenCV's mp4v writer opens


class OutputPathError(UserError, ValueError):
    """An output path that would overwrite an input, collides with another output, or cannot be written."""


def _identity(path: Path) -> tuple[Path, tuple[int, int] | None]:
    """The resolved path (symlinks followed) and, for an existing file, its (device, inode): hard links match."""
    try:
        stat = path.stat()
        inode = (stat.st_dev, stat.st_ino)
    except OSError:
        inode = None
    return path.resolve(), inode


def check_not_inputs(outputs: Iterable[tuple[str, Path]], inputs: Sequence[Path]) -> None:
    """OutputPathError when an output (``(flag, path)`` pairs) is an input or the same file as another output."""
    by_path: dict[Path, Path] = {}
    by_inode: dict[tuple[int, int], Path] = {}
    for source in inputs:
        resolved, inode = _identity(source)
        by_path.setdefault(resolved, source)
        if inode is not None:
            by_inode.setdefault(inode, source)
    written: dict[Path, str] = {}
    for flag, out in outputs:
        resolved, inode = _identity(out)
        source = by_path.get(resolved) or (by_inode.get(inode) if inode is not None else None)
        if source is not None:
            raise OutputPathError(
                f"{flag} {out}: that is the input {source}; choose another name (inputs are never overwritten)"
            )
        if resolved in written:
            raise OutputPathError(f"{flag} {out}: {written[resolved]} writes the same file; give them different names")
        written[resolved] = flag


def destinations(target: Path, inputs: Sequence[Path], suffix: str, extension: str = ".png") -> list[Path]:
    """One output path per input: ``target`` itself for a single input when it has an extension, else files
    ``target/<name><suffix><extension>`` with names unique across ``inputs`` (see the module docstring)."""
    if len(inputs) == 1 and target.suffix:
        return [target]
    stems = Counter(p.stem for p in inputs)
    names = [p.stem if stems[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.')}" for p in inputs]
    counts, used, unique = Counter(names), Counter(), []
    for name in names:
        used[name] += 1
        unique.append(name if counts[name] == 1 or used[name] == 1 else f"{name}-{used[name]}")
    return [target / f"{name}{suffix}{extension}" for name in unique]


def check_image_writable(path: Path, flag: str) -> None:
    """OutputPathError unless OpenCV has a writer for ``path``'s extension (cv2.imwrite would raise cv2.error)."""
    import cv2

    if not path.suffix or not cv2.haveImageWriter(f"x{path.suffix}"):
        raise OutputPathError(f"{flag} {path}: OpenCV cannot write {path.suffix or 'files without an extension'}; "
                              "use .png or .jpg")


def check_plot_writable(path: Path, flag: str) -> None:
    """OutputPathError unless matplotlib can save a figure in ``path``'s format."""
    from matplotlib.figure import Figure

    formats = Figure().canvas.get_supported_filetypes()
    if path.suffix.lstrip(".").lower() not in formats:
        raise OutputPathError(f"{flag} {path}: matplotlib cannot save {path.suffix or 'files without an extension'};"
                              f" use one of {', '.join('.' + f for f in sorted(formats))}")


def check_video_writable(path: Path, flag: str = "--output") -> None:
    """OutputPathError unless ``path`` ends in a container the mp4v writer opens."""
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        raise OutputPathError(f"{flag} {path}: write the video as one of {', '.join(VIDEO_SUFFIXES)}")
    if path.is_dir():
        raise OutputPathError(f"{flag} {path}: is a directory; name a video file")


def temporary_path(path: Path) -> Path:
    """A hidden sibling of ``path`` with the same extension (writers choose the format from it)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}-{secrets.token_hex(3)}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary name beside ``path``; rename it to ``path`` if the block succeeds, else delete it.

    The block must create the file; OutputPathError if it did not (a writer that failed without raising).
    """
    tmp = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        if not tmp.is_file():
            raise OutputPathError(f"{path}: nothing was written (unwritable folder or unsupported format)")
        os.replace(tmp, path)
    except OSError as err:
        raise OutputPathError(f"{path}: cannot write ({err.strerror or err})") from None
    finally:
        tmp.unlink(missing_ok=True)


def plan_outputs(
    inputs: Sequence[Path], output: Path | None, plot: Path | None
) -> tuple[list[Path | None], list[Path | None]]:
    """``predict.py``'s annotated image and plot path per input (None where not asked), checked against the
    rules above before any image is read: OutputPathError for an unwritable format, a path that is an input,
    or two outputs that would be the same file."""
    annotated = destinations(output, inputs, "_annotated") if output is not None else [None] * len(inputs)
    plots = destinations(plot, inputs, "_probabilities") if plot is not None else [None] * len(inputs)
    for path in {p for p in annotated if p is not None}:
        check_image_writable(path, "--output")
    for path in {p for p in plots if p is not None}:
        check_plot_writable(path, "--plot")
    pairs = [("--output", p) for p in annotated if p is not None] + [("--plot", p) for p in plots if p is not None]
    check_not_inputs(pairs, inputs)
    for flag, path in pairs:
        if path.is_dir():
            raise OutputPathError(f"{flag} {path}: is a directory; name a file (or pass several images)")
    return annotated, plots
