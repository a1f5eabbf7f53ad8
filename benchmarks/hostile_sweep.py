"""Run the hostile inputs of issue 25 against the real CLIs, each in a fresh folder as a separate process, and count
tracebacks, changed inputs, debris and payloads that ran (the aim: 0, 0, 0, 0).

    nice -n 10 python benchmarks/hostile_sweep.py            # ~2-4 min on 2 busy cores (TF starts several times)
    python benchmarks/hostile_sweep.py --only convert        # cases whose name contains "convert"

Each case records: the exit code (and whether it is the one errors.py prescribes), whether stderr names the file or
flag, whether "Traceback" appears, whether any input's sha256 changed, what new files or folders were left beside
the inputs (expected outputs aside), whether a payload's marker file appeared, and the wall time.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import pickle
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


class _OpenOnLoad:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@dataclass
class Case:
    name: str
    argv: list[str]  # {d} is replaced by the case's folder
    expect_rc: int
    names: str  # text stderr must contain (file or flag)
    setup: str  # which inputs to make (see make_inputs)
    outputs: tuple[str, ...] = ()  # files the case may create
    signal_after_s: float | None = None
    signame: str = "SIGINT"
    env: dict[str, str] = field(default_factory=dict)


def _png_bomb(path: Path, side: int = 20000) -> None:
    """A valid all-black grey PNG of side x side pixels (~400 KB), written row by row (no big array)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    comp, row, parts = zlib.compressobj(9), b"\0" * (side + 1), []
    for _ in range(side):
        parts.append(comp.compress(row))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def make_inputs(folder: Path, kind: str) -> None:
    import cv2

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import make_rows, write_fer_csv

    rng = np.random.default_rng(0)
    cv2.imwrite(str(folder / "p.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    if kind in ("images3",):
        cv2.imwrite(str(folder / "a.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
        cv2.imwrite(str(folder / "a.jpg"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
        cv2.imwrite(str(folder / "b.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))
    if kind == "symlink":
        (folder / "link.png").symlink_to(folder / "p.png")
    if kind == "video":
        writer = cv2.VideoWriter(str(folder / "a.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
        for i in range(20):
            writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
        writer.release()
    if kind in ("csv", "csv_gz_cut", "csv_bom", "csv_big"):
        # csv_big: ~15 s of features on 2 idle cores, so a signal at 6 s lands during them
        rows = make_rows((600, 100, 100) if kind == "csv_big" else (2, 1, 1))
        write_fer_csv(folder / "fer.csv", rows)
        if kind == "csv_gz_cut":
            data = gzip.compress((folder / "fer.csv").read_bytes())
            (folder / "cut.csv.gz").write_bytes(data[: len(data) // 2])
            (folder / "fer.csv").unlink()
        if kind == "csv_bom":
            (folder / "bom.csv").write_bytes(b"\xef\xbb\xbf" + (folder / "fer.csv").read_bytes())
    if kind == "header":
        (folder / "h.csv").write_text("emotion,Usage\n1,Training\n")
    if kind in ("joblib", "trials"):
        payload = pickle.dumps({"x": _OpenOnLoad(str(folder / "MARKER"))})
        (folder / ("evil.joblib" if kind == "joblib" else "trials.pkl")).write_bytes(payload)
    if kind == "trials_garbage":
        (folder / "trials.pkl").write_bytes(os.urandom(64))
    if kind in ("trials", "trials_garbage", "mongo"):
        (folder / "data").mkdir()
        (folder / "data" / "meta.json").write_text("{}")
    if kind == "hdf5":
        (folder / "m.hdf5").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(500))
    if kind == "bomb":
        _png_bomb(folder / "bomb.png")
    if kind == "nan":
        import keras

        from models.io import save_model

        inputs = keras.Input((48, 48, 1))
        model = keras.Model(inputs, keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(inputs)))
        model.layers[-1].set_weights([np.full(w.shape, np.nan, np.float32) for w in model.layers[-1].get_weights()])
        meta = {"model_name": "nan", "class_names": list("ABCDEFG"), "feature_set": "raw", "feature_dim": 0}
        save_model(model, folder / "nan.keras", meta)


CONVERT = [PY, str(ROOT / "convert_fer2013.py")]
PREDICT = [PY, str(ROOT / "predict.py")]
VIDEO = [PY, str(ROOT / "predict_from_video.py")]
SEARCH = [PY, str(ROOT / "optimize_hyperparams.py")]
FAST = ["--no-landmarks", "--no-hog", "--no-progress"]

CASES = [
    Case("predict --model evil.joblib (pickle payload)", [*PREDICT, "--image", "{d}/p.png", "--model",
         "{d}/evil.joblib", "--assume-face"], 1, "evil.joblib", "joblib"),
    Case("optimize --trials-file payload", [*SEARCH, "--data", "{d}/data", "--trials-file", "{d}/trials.pkl",
         "--out", "{d}/s/best.json", "--max-evals", "1"], 1, "trials.pkl", "trials"),
    Case("optimize --trials-file random bytes", [*SEARCH, "--data", "{d}/data", "--trials-file", "{d}/trials.pkl",
         "--out", "{d}/s/best.json", "--max-evals", "1"], 1, "trials.pkl", "trials_garbage"),
    Case("optimize --mongo unreachable", [*SEARCH, "--data", "{d}/data", "--mongo", "mongo://10.255.255.1:27017/f/jobs",
         "--exp-key", "x", "--out", "{d}/best.json", "--max-evals", "1"], 1, "10.255.255.1", "mongo"),
    Case("predict --output = --image", [*PREDICT, "--image", "{d}/p.png", "--output", "{d}/p.png"], 1, "p.png", "one"),
    Case("predict --output symlink to --image", [*PREDICT, "--image", "{d}/p.png", "--output", "{d}/link.png"], 1,
         "link.png", "symlink"),
    Case("predict 3 images, 2 share a stem", [*PREDICT, "--image", "{d}/a.png", "{d}/a.jpg", "{d}/b.png", "--output",
         "{d}/out", "--assume-face"], 0, "", "images3",
         ("out", "out/a_png_annotated.png", "out/a_jpg_annotated.png", "out/b_annotated.png")),
    Case("predict --output x.xyz", [*PREDICT, "--image", "{d}/p.png", "--output", "{d}/x.xyz"], 1, "x.xyz", "one"),
    Case("predict garbage .hdf5 model", [*PREDICT, "--image", "{d}/p.png", "--model", "{d}/m.hdf5", "--assume-face"],
         1, "m.hdf5", "hdf5"),
    Case("predict NaN model --json", [*PREDICT, "--image", "{d}/p.png", "--model", "{d}/nan.keras", "--assume-face",
         "--json"], 1, "non-finite", "nan"),
    Case("predict 20000x20000 PNG (425 KB)", [*PREDICT, "--image", "{d}/bomb.png", "--assume-face"], 1, "bomb.png",
         "bomb"),
    Case("predict no face -> 3", [*PREDICT, "--image", "{d}/p.png"], 3, "no face", "one"),
    Case("video --output = --source", [*VIDEO, "--source", "{d}/a.mp4", "--no-display", "--output", "{d}/a.mp4"], 1,
         "a.mp4", "video"),
    Case("video --output x.xyz", [*VIDEO, "--source", "{d}/a.mp4", "--no-display", "--output", "{d}/x.xyz"], 1,
         "x.xyz", "video"),
    Case("convert truncated .csv.gz", [*CONVERT, "--csv", "{d}/cut.csv.gz", "--out", "{d}/out", *FAST], 1,
         "cut.csv.gz", "csv_gz_cut"),
    Case("convert --out under a file", [*CONVERT, "--csv", "{d}/fer.csv", "--out", "{d}/fer.csv/out", *FAST], 1,
         "--out", "csv"),
    Case("convert --out in /proc (unwritable)", [*CONVERT, "--csv", "{d}/fer.csv", "--out", "/proc/fer_no/out",
         *FAST], 1, "--out", "csv"),
    Case("convert header error (no advice)", [*CONVERT, "--csv", "{d}/h.csv", "--out", "{d}/out", *FAST], 1, "h.csv",
         "header"),
    Case("convert csv with UTF-8 BOM", [*CONVERT, "--csv", "{d}/bom.csv", "--out", "{d}/out", *FAST], 0, "",
         "csv_bom", ("out", "out/*")),
    Case("convert Ctrl-C during features", [*CONVERT, "--csv", "{d}/fer.csv", "--out", "{d}/out", "--workers", "2",
         "--no-progress"], 130, "interrupted", "csv_big", signal_after_s=6.0),
    Case("convert SIGTERM during features", [*CONVERT, "--csv", "{d}/fer.csv", "--out", "{d}/out", "--workers", "2",
         "--no-progress"], 130, "interrupted", "csv_big", signal_after_s=6.0, signame="SIGTERM"),
]


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if not p.is_symlink() or p.exists()
    }


def run_case(case: Case) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_inputs(folder, case.setup)
        before = snapshot(folder)
        argv = [a.replace("{d}", tmp) for a in case.argv]
        start = time.perf_counter()
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp,
                                   start_new_session=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        if case.signal_after_s is not None:
            time.sleep(case.signal_after_s)
            os.killpg(process.pid, getattr(signal, case.signame))
        out, err = process.communicate(timeout=300)
        seconds = time.perf_counter() - start
        after = snapshot(folder)
        changed = [k for k, v in before.items() if after.get(k) != v and k != "MARKER"]
        allowed = {o for o in case.outputs if "*" not in o}
        prefixes = tuple(o[:-1] for o in case.outputs if o.endswith("*"))
        left = [k for k in after if k not in before and k not in allowed and not k.startswith(prefixes)
                and k != "MARKER"]
        return {
            "case": case.name,
            "rc": process.returncode,
            "rc_ok": process.returncode == case.expect_rc,
            "named": case.names in err,
            "traceback": "Traceback" in err,
            "changed": changed,
            "left": left,
            "payload_ran": (folder / "MARKER").exists(),
            "seconds": seconds,
            "stderr": err.strip().splitlines()[-1] if err.strip() else "",
            "json_nan": "NaN" in out,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="run the cases whose name contains this text")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    results = [run_case(c) for c in CASES if args.only in c.name]
    print(f"{'case':44} {'rc':>4} {'ok':>3} {'named':>5} {'trace':>5} {'chg':>3} {'left':>4} {'ran':>3} {'s':>6}")
    for r in results:
        print(f"{r['case'][:44]:44} {r['rc']:>4} {'y' if r['rc_ok'] else 'N':>3} {'y' if r['named'] else 'N':>5} "
              f"{'Y' if r['traceback'] else '-':>5} {len(r['changed']):>3} {len(r['left']):>4} "
              f"{'Y' if r['payload_ran'] else '-':>3} {r['seconds']:6.1f}")
        print(f"    stderr: {r['stderr'][:150]}")
        if r["left"] or r["changed"]:
            print(f"    left: {r['left']} changed: {r['changed']}")
    print(f"\ncases {len(results)}; wrong exit code {sum(not r['rc_ok'] for r in results)}; "
          f"unnamed {sum(not r['named'] for r in results)}; tracebacks {sum(r['traceback'] for r in results)}; "
          f"inputs changed {sum(bool(r['changed']) for r in results)}; debris {sum(bool(r['left']) for r in results)}; "
          f"payloads run {sum(r['payload_ran'] for r in results)}; NaN in stdout {sum(r['json_nan'] for r in results)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
