"""experiments/gpu/carry_data.py: the converted data packed for a device call and unpacked there, exactly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import write_converted

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("carry_data", ROOT / "experiments" / "gpu" / "carry_data.py")
carry_data = importlib.util.module_from_spec(spec)
spec.loader.exec_module(carry_data)


def test_pack_then_unpack_gives_back_the_same_files(tmp_path, capsys):
    data = write_converted(tmp_path / "data", {"Training": 250, "PublicTest": 37, "PrivateTest": 5}, hog=None,
                           landmarks=False)
    assert carry_data.main(["pack", "--data", str(data), "--out", str(tmp_path / "packed")]) == 0
    assert "round trip exact" in capsys.readouterr().out
    assert not (tmp_path / "packed" / "PrivateTest").exists()  # PrivateTest stays here
    assert carry_data.main(["unpack", "--src", str(tmp_path / "packed"), "--out", str(tmp_path / "there")]) == 0
    for name in ("Training/images.npy", "Training/labels.npy", "PublicTest/images.npy", "PublicTest/labels.npy",
                 "meta.json"):
        assert (tmp_path / "there" / name).read_bytes() == (data / name).read_bytes(), name


def test_unpack_refuses_pixels_that_changed_and_pack_refuses_to_overwrite(tmp_path, capsys):
    data = write_converted(tmp_path / "data", {"Training": 120, "PublicTest": 20}, hog=None, landmarks=False)
    packed = tmp_path / "packed"
    assert carry_data.main(["pack", "--data", str(data), "--out", str(packed)]) == 0
    assert carry_data.main(["pack", "--data", str(data), "--out", str(packed)]) == 1
    assert f"{packed} exists" in capsys.readouterr().err

    import cv2

    webp = packed / "PublicTest" / "images.webp"
    image = cv2.imdecode(np.frombuffer(webp.read_bytes(), np.uint8), cv2.IMREAD_GRAYSCALE)
    image[3, 5] ^= 1
    webp.write_bytes(cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes())
    assert carry_data.main(["unpack", "--src", str(packed), "--out", str(tmp_path / "there")]) == 1
    assert "PublicTest: decoded pixels differ from the packed ones" in capsys.readouterr().err
    assert not (tmp_path / "there").exists() and not (tmp_path / "there.partial").exists()  # nothing half-written


@pytest.mark.parametrize("n", [1, 99, 100, 101])
def test_mosaic_round_trip_for_any_count(n):
    faces = np.random.default_rng(n).integers(0, 256, (n, 48, 48), dtype=np.uint8)
    assert np.array_equal(carry_data.unmosaic(carry_data.mosaic(faces), n, 48, 48), faces)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (requirements.txt)")
def test_seeds_script_trains_each_seed_under_jax_from_the_packed_data(tmp_path):
    """experiments/gpu/seeds.sh as a device call runs it (there: python3, the carried wheels, a GPU), here on the
    CPU with this interpreter: unpack, then one run per seed, each in its own folder under $OUT."""
    import os
    import subprocess

    data = write_converted(tmp_path / "data", {"Training": 64, "PublicTest": 16}, hog=None, landmarks=False)
    assert carry_data.main(["pack", "--data", str(data), "--out", str(tmp_path / "packed")]) == 0
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PY": sys.executable, "WHEELS": "none",
           "DATA_SRC": str(tmp_path / "packed"), "DATA": str(tmp_path / "unpacked"), "SEEDS": "1 2", "EPOCHS": "1",
           "WIDTH": "4", "TEACHERS": "", "BUDGET_S": "200", "KERAS_HOME": str(tmp_path / "keras_home")}
    done = subprocess.run(["bash", "experiments/gpu/seeds.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for seed in (1, 2):
        assert f"seed {seed}: 1 epochs; epoch 1/1: PublicTest accuracy" in done.stdout, done.stdout
        assert (tmp_path / "out" / f"seed{seed}" / "model.keras").is_file()
    assert '"seed": 2' in (tmp_path / "out" / "seed2" / "config.json").read_text()
