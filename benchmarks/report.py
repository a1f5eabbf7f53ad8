"""What every benchmark does with its figures: print them, and with ``--out`` write the same text to a file."""

from __future__ import annotations

import os
from pathlib import Path


def write_report(text: str, out: Path | None, *, show: bool = True) -> int:
    """Print ``text`` (unless ``show`` is False) and write it to ``out`` when given, replacing the file only once the
    new text is complete. Returns 0, the benchmark's exit status."""
    if show:
        print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
        try:
            tmp.write_text(text + "\n")
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return 0
