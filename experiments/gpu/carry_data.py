"""Carry a converted FER2013 directory (convert_fer2013.py --no-landmarks --no-hog) to a lent GPU machine, losslessly.

A device call carries at most 64 MiB with the working tree, and Training's 28,709 faces are 66 MB as images.npy
(zlib: 62 MB, xz: 50 MB). As lossless WebP mosaics (100 faces a row) Training takes 46.5 MB and PublicTest 5.8 MB
(49.8 MiB in all), which fits beside a working tree slimmed to its code and one teacher (experiments/gpu/README.md).
``pack`` writes the mosaics, the labels (xz) and a manifest with each split's SHA-256; ``unpack`` decodes them on the
device and refuses any split whose pixels differ from the packed ones; ``budget`` adds up what a call would carry.

    # here: pack Training and PublicTest into .gpu/data (ignored by git)
    python experiments/gpu/carry_data.py pack --data /work/runs/fer2013_features --out .gpu/data
    # there (experiments/gpu/seeds.sh does this): back to a directory train.py reads
    python3 experiments/gpu/carry_data.py unpack --src .gpu/data --out /tmp/fer2013_features
    # here, before the call: the working tree's files, .gpu and .whl against the 64 MiB
    python experiments/gpu/carry_data.py budget

PrivateTest stays here: it is evaluated once per candidate, after the models come back.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import lzma
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from errors import UserError, run_main  # noqa: E402

PER_ROW = 100  # faces per mosaic row: 4,800 px wide; Training's 288 rows are 13,824 px high (WebP's limit: 16,383)
SPLITS = ("Training", "PublicTest")


class CarryError(UserError):
    pass


def mosaic(images: np.ndarray) -> np.ndarray:
    """(n, h, w) uint8 -> one (rows * h, PER_ROW * w) image, the last row padded with zeros."""
    n, h, w = images.shape
    rows = -(-n // PER_ROW)
    padded = np.zeros((rows * PER_ROW, h, w), np.uint8)
    padded[:n] = images
    return padded.reshape(rows, PER_ROW, h, w).transpose(0, 2, 1, 3).reshape(rows * h, PER_ROW * w)


def unmosaic(image: np.ndarray, n: int, h: int, w: int) -> np.ndarray:
    rows = image.shape[0] // h
    return image.reshape(rows, h, PER_ROW, w).transpose(0, 2, 1, 3).reshape(rows * PER_ROW, h, w)[:n]


def digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


@contextlib.contextmanager
def whole_directory(out: Path) -> Iterator[Path]:
    """Yield ``OUT.partial`` to fill; renamed to ``out`` if the block succeeds, else removed. CarryError if ``out``
    exists."""
    if out.exists():
        raise CarryError(f"{out} exists; remove it first")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    tmp.rename(out)


def pack(data: Path, out: Path, splits: tuple[str, ...]) -> None:
    if not (data / "meta.json").is_file():
        raise CarryError(f"{data}: no meta.json (a convert_fer2013.py output directory is expected)")
    with whole_directory(out) as tmp:
        _pack_into(data, tmp, splits)
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{out}: {total / 2**20:.1f} MiB, round trip exact")


def _pack_into(data: Path, tmp: Path, splits: tuple[str, ...]) -> None:
    import cv2

    manifest = {"per_row": PER_ROW, "splits": {}}
    for split in splits:
        images_path = data / split / "images.npy"
        if not images_path.is_file():
            raise CarryError(f"{images_path}: missing")
        images = np.load(images_path)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise CarryError(f"{images_path}: expected (n, 48, 48) uint8, got {images.shape} {images.dtype}")
        ok, encoded = cv2.imencode(".webp", mosaic(images), [cv2.IMWRITE_WEBP_QUALITY, 101])  # 101: lossless
        if not ok:
            raise CarryError(f"{split}: WebP encoding failed")
        (tmp / split).mkdir(parents=True)
        (tmp / split / "images.webp").write_bytes(encoded.tobytes())
        (tmp / split / "labels.npy.xz").write_bytes(lzma.compress((data / split / "labels.npy").read_bytes()))
        manifest["splits"][split] = {"shape": list(images.shape), "sha256": digest(images)}
        print(f"{split}: {images.shape[0]:,} faces, {images.nbytes / 1e6:.1f} MB -> {len(encoded) / 1e6:.1f} MB",
              flush=True)
    shutil.copy2(data / "meta.json", tmp / "meta.json")
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    decode_all(tmp, None)  # the round trip, before anything is called packed


def unpack(src: Path, out: Path) -> None:
    """``src`` (``pack``'s output) -> a directory train.py reads at ``out``, written whole or not at all."""
    with whole_directory(out) as tmp:
        decode_all(src, tmp)


def decode_all(src: Path, out: Path | None) -> None:
    """Decode every split of ``src`` and check its SHA-256; write a train.py directory to ``out`` unless None."""
    import cv2

    try:
        manifest = json.loads((src / "manifest.json").read_text())
    except (OSError, ValueError) as err:
        raise CarryError(f"{src / 'manifest.json'}: {err}") from None
    for split, entry in manifest["splits"].items():
        n, h, w = entry["shape"]
        encoded = np.frombuffer((src / split / "images.webp").read_bytes(), np.uint8)
        image = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise CarryError(f"{src / split / 'images.webp'}: not a readable WebP")
        images = unmosaic(image, n, h, w)
        if digest(images) != entry["sha256"]:
            raise CarryError(f"{split}: decoded pixels differ from the packed ones")
        if out is not None:
            (out / split).mkdir(parents=True, exist_ok=True)
            np.save(out / split / "images.npy", images)
            (out / split / "labels.npy").write_bytes(lzma.decompress((src / split / "labels.npy.xz").read_bytes()))
    if out is not None:
        shutil.copy2(src / "meta.json", out / "meta.json")


CALL_LIMIT = 64 * 2**20  # bytes a device call carries: the working tree and its carried paths together


def budget(carried: list[Path]) -> int:
    """Print what a device call would carry (the working tree's tracked and untracked, not ignored, files that exist,
    plus ``carried``) against CALL_LIMIT; the bytes left (negative: over)."""
    import subprocess

    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, text=True, check=True).stdout.split("\0")
    tree = sum(Path(f).stat().st_size for f in listed if f and Path(f).is_file())
    extra = {str(c): sum(f.stat().st_size for f in c.rglob("*") if f.is_file()) if c.is_dir() else 0
             for c in carried}
    total = tree + sum(extra.values())
    print(f"working tree {tree / 2**20:.1f} MiB" + "".join(f", {k} {v / 2**20:.1f} MiB" for k, v in extra.items())
          + f": {total / 2**20:.1f} of {CALL_LIMIT / 2**20:.0f} MiB")
    return CALL_LIMIT - total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="converted directory -> WebP mosaics + labels + manifest")
    p.add_argument("--data", type=Path, required=True, help="convert_fer2013.py output directory")
    p.add_argument("--out", type=Path, default=Path(".gpu/data"), help="where to write (default .gpu/data)")
    p.add_argument("--splits", nargs="+", default=list(SPLITS), choices=["Training", "PublicTest", "PrivateTest"])
    u = sub.add_parser("unpack", help="WebP mosaics -> a directory train.py reads")
    u.add_argument("--src", type=Path, default=Path(".gpu/data"))
    u.add_argument("--out", type=Path, required=True)
    b = sub.add_parser("budget", help="what a device call would carry, against its 64 MiB")
    b.add_argument("--carry", type=Path, nargs="*", default=[Path(".gpu"), Path(".whl")])
    args = parser.parse_args(argv)
    return run_main("carry_data.py", lambda: run(args))


def run(args: argparse.Namespace) -> int:
    if args.command == "budget":
        left = budget(args.carry)
        if left < 0:
            raise CarryError(f"{-left / 2**20:.1f} MiB over: move big tracked files the run does not need "
                             "aside (experiments/gpu/README.md)")
        print(f"{left / 2**20:.1f} MiB to spare")
    elif args.command == "pack":
        pack(args.data, args.out, tuple(args.splits))
    else:
        unpack(args.src, args.out)
        print(f"{args.out}: unpacked, every split's SHA-256 checked")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
