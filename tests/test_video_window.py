"""predict_from_video.py's desktop window, used as a person would: under a virtual X server (Xvfb).

The test starts Xvfb, runs ``predict_from_video.py`` on ../shared/media/face_video_short.mp4 played three times
(or, without ../shared, a clip of the astronaut's face made here) with its window and the bundled model, grabs the
screen (Pillow's X11 grab) until it shows a box and a label, sends 'q' with xdotool, and expects exit 0 within 2 s.
It also checks that the file played at its own frame rate, not as fast as frames were processed. The screenshot is
saved under pytest's tmp dir and, when FER_ARTIFACTS names a folder, there too.

Skipped with a reason where Xvfb or xdotool is missing (``.ci/run`` installs both).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.video import QUIT_KEY

ROOT = Path(__file__).resolve().parents[1]
SHORT_VIDEO = ROOT.parent / "shared" / "media" / "face_video_short.mp4"
WINDOW_TITLE = "facial expression"  # the start of run_video's window name

pytestmark = [
    pytest.mark.skipif(shutil.which("Xvfb") is None, reason="needs Xvfb (apt-get install xvfb)"),
    pytest.mark.skipif(shutil.which("xdotool") is None, reason="needs xdotool (apt-get install xdotool)"),
    pytest.mark.timeout(300),
    pytest.mark.slow,  # a real browser / X server: out of make test-fast
]


@pytest.fixture
def display():
    """A fresh Xvfb server; yields its DISPLAY name (``:N``, the number chosen by Xvfb itself)."""
    read, write = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    if not number:
        server.kill()
        pytest.fail("Xvfb did not start")
    yield f":{number}"
    server.terminate()
    server.wait(10)


@pytest.fixture
def video(tmp_path) -> Path:
    """A clip of about 14 s: the short video played three times, or the astronaut's face moving.

    The short video alone lasts 4.7 s, and the whole test took up to 4.7 s here beside four busy loops: too little
    room to wait for a window that stays black (see the remap below) and still see a box before the clip ends.
    """
    path = tmp_path / "face.mp4"
    if SHORT_VIDEO.is_file():
        capture = cv2.VideoCapture(str(SHORT_VIDEO))
        fps = capture.get(cv2.CAP_PROP_FPS)
        clip = []
        while (read := capture.read())[0]:
            clip.append(read[1])
        capture.release()
        frames = (frame for _ in range(3) for frame in clip)
    else:
        from skimage import data

        fps, face = 30.0, cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[20:240, 110:330]

        def moving_face(i: int) -> np.ndarray:
            frame = np.full((320, 480, 3), 100, np.uint8)
            frame[50:270, 40 + i % 40 : 260 + i % 40] = face
            return frame

        frames = (moving_face(i) for i in range(420))  # made one at a time, not held: 420 frames are 190 MB
    writer = None
    for frame in frames:
        if writer is None:
            height, width = frame.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        writer.write(frame)
    writer.release()
    return path


def box_and_label(screen: np.ndarray) -> bool:
    """True when an RGB screen shows predict.py's green (0, 200, 0) box and a filled label with white text."""
    green = (screen[..., 0] < 40) & (screen[..., 1] > 170) & (screen[..., 2] < 40)
    if green.sum() < 800:  # a box outline alone is a few hundred pixels; the filled label adds as many again
        return False
    band = green.sum(axis=1) >= 50  # rows crossing the label's filled background
    columns = np.flatnonzero(green.any(axis=0))
    label = screen[band][:, columns.min() : columns.max() + 1]
    white = (label > 220).all(axis=-1)
    return bool(band.any() and white.sum() >= 10)


def test_window_shows_box_and_label_and_q_quits(display, video, tmp_path):
    from PIL import ImageGrab

    env = {**os.environ, "DISPLAY": display}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "predict_from_video.py"), "--source", str(video)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    screen, shown, windows = None, False, []
    try:
        deadline = time.monotonic() + 180  # model loading on a busy machine
        while not windows and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.25)
            search = ["xdotool", "search", "--name", WINDOW_TITLE]
            windows = subprocess.run(search, env=env, capture_output=True, text=True).stdout.split()
        # Each grab is an X connection (Pillow keeps them open; Xvfb allows 256): a few per second suffice.
        grabs, found, remapped = 0, time.monotonic(), False
        while windows and grabs < 100 and process.poll() is None and not shown:
            screen = np.asarray(ImageGrab.grab(xdisplay=display))
            grabs += 1
            shown = box_and_label(screen)
            if not shown and screen.max() == 0 and not remapped and time.monotonic() - found > 2:
                # Without a window manager, Qt's window on Xvfb stays black in about 1 run in 10 (its first
                # Expose event is lost; measured here, and seen once in CI). Unmapping and mapping it again
                # repaints it; a program that never draws still shows black and fails.
                remap = ["xdotool", "windowunmap", "--sync", windows[0], "windowmap", "--sync", windows[0]]
                subprocess.run(remap, env=env, check=True)
                remapped = True
            if not shown:
                time.sleep(0.1)
        assert screen is not None, f"no window appeared; exit code {process.poll()}"
        cv2.imwrite(str(tmp_path / "video_window.png"), cv2.cvtColor(screen, cv2.COLOR_RGB2BGR))
        if os.environ.get("FER_ARTIFACTS"):
            Path(os.environ["FER_ARTIFACTS"]).mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp_path / "video_window.png", Path(os.environ["FER_ARTIFACTS"]) / "video_window.png")
        assert shown, f"no box and label on screen; exit code {process.poll()}"
        assert process.poll() is None, "the video ended before 'q' could be sent"
        subprocess.run(["xdotool", "windowfocus", "--sync", windows[0], "key", QUIT_KEY], env=env, check=True)
        sent = time.monotonic()
        code = process.wait(timeout=10)
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
    output = process.stdout.read()
    assert code == 0, output
    assert took < 2, f"exited {took:.1f} s after 'q'"
    # Played at the clip's frame rate (it used to run ~8x too fast in the window); startup only lowers this figure.
    source_fps = cv2.VideoCapture(str(video)).get(cv2.CAP_PROP_FPS)
    frames, fps = re.search(r"(\d+) frames, \d+ predictions in [\d.]+ s \(([\d.]+) fps\)", output).groups()
    frames, seconds = int(frames), int(frames) / float(fps)  # the printed seconds are rounded to 0.1 s
    # n frames paced at the clip's rate span n - 1 intervals (a run cut short by 'q' may show only a few frames)
    assert (frames - 1) / seconds <= 1.15 * source_fps, output
