"""The web page of serve.py in a real browser: Debian's headless chromium driven by selenium through chromedriver.

``serve.py`` runs as a subprocess with the bundled model (the command a user types), Chromium's fake camera plays a
.y4m clip made here (from ../shared/media/face_video_short.mp4, or from skimage's astronaut photo when ../shared is
absent), and the page must show a box and an emotion label. Screenshots of both flows are saved under pytest's
tmp dir and, when the environment variable FER_ARTIFACTS names a folder, there too. Closing the module stops the
server with SIGINT (Ctrl-C), which must exit 0.

Skipped with a reason when chromium, chromedriver or selenium are missing (``.ci/run`` installs them). Nothing is
downloaded at run time.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHORT_VIDEO = ROOT.parent / "shared" / "media" / "face_video_short.mp4"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
CLASSES = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise", "Neutral")  # the bundled model's
# The page draws boxes and label backgrounds in rgb(0, 200, 0), predict.py's colour.
GREEN_PIXELS_JS = """
const canvas = document.getElementById(arguments[0]);
const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
let n = 0;
for (let i = 0; i < data.length; i += 4) {
  if (data[i] < 40 && data[i + 1] > 170 && data[i + 2] < 40 && data[i + 3] > 200) n++;
}
return n;
"""

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)"),
    pytest.mark.skipif(CHROMEDRIVER is None, reason="needs chromedriver (apt-get install chromium-driver)"),
    pytest.mark.timeout(300),
    pytest.mark.slow,  # a real browser / X server: out of make test-fast
]
selenium = pytest.importorskip("selenium", reason="needs selenium (pip install -r requirements.txt)")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def green_pixels(image_bgr: np.ndarray) -> int:
    b, g, r = (image_bgr[..., i].astype(int) for i in range(3))
    return int(np.count_nonzero((r < 40) & (g > 170) & (b < 40)))


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 30) -> Path:
    """BGR frames (even width and height) -> an uncompressed YUV4MPEG2 4:2:0 clip, Chromium's fake-camera format."""
    height, width = frames[0].shape[:2]
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


def camera_frames(n: int = 60) -> list[np.ndarray]:
    """The first frames of the shared face video, else the astronaut's head drifting across a 640x480 frame."""
    if SHORT_VIDEO.is_file():
        capture = cv2.VideoCapture(str(SHORT_VIDEO))
        frames = []
        while len(frames) < n and (read := capture.read())[0]:
            frame = read[1]
            frames.append(frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2])
        capture.release()
        if frames:
            return frames
    from skimage import data

    head = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[0:300, 70:370], (360, 360))
    frames = []
    for i in range(n):
        frame = np.full((480, 640, 3), 90, np.uint8)
        dx = 120 + i % 30
        frame[60:420, dx : dx + 360] = head
        frames.append(frame)
    return frames


def save_artefact(driver, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    assert driver.save_screenshot(str(path))
    if os.environ.get("FER_ARTIFACTS"):
        folder = Path(os.environ["FER_ARTIFACTS"])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / name)
    return path


@pytest.fixture(scope="module")
def server_url():
    """``python serve.py --port 0`` with the bundled model; stopped by SIGINT at the end, which must exit 0."""
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "serve.py"), "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True)
    reader.start()
    url, log = None, []
    deadline = time.monotonic() + 180  # TensorFlow's import is slow on a loaded machine
    while url is None and time.monotonic() < deadline and process.poll() is None:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        log.append(line)
        if line.startswith("serving on "):
            url = line.split()[2]
    if url is None:
        process.kill()
        pytest.fail("serve.py did not start:\n" + "".join(log))
    yield url
    process.send_signal(signal.SIGINT)
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail("serve.py did not stop within 60 s of SIGINT")
    reader.join(5)
    log.extend(lines.queue)
    assert code == 0, "".join(log)
    assert "stopped by SIGINT" in log[-1] and "Traceback" not in "".join(log)


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chromium")
    clip = write_y4m(folder / "camera.y4m", camera_frames())
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",  # as root in a container
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,1100",
        f"--user-data-dir={folder / 'profile'}",
        "--use-fake-ui-for-media-stream",  # grant the camera without a prompt
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield browser
    browser.quit()


@pytest.fixture
def astronaut_png(tmp_path) -> Path:
    from skimage import data

    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def test_webcam_shows_box_and_label_within_10_s(server_url, driver, tmp_path):
    driver.get(server_url)
    WebDriverWait(driver, 30).until(lambda d: "model " in d.find_element(By.ID, "model-info").text)
    driver.find_element(By.ID, "webcam-button").click()
    start = time.monotonic()
    labels = "[...document.querySelectorAll('#live-faces li')].map((li) => li.dataset.emotion)"
    emotions = WebDriverWait(driver, 10).until(lambda d: d.execute_script(f"return {labels};"))
    seen_after = time.monotonic() - start
    WebDriverWait(driver, 10).until(lambda d: "fps" in d.find_element(By.ID, "fps").text)  # a second reply came
    assert seen_after < 10
    assert emotions[0] in CLASSES
    # The box and the label background. Each reply redraws the overlay, and a frame where the detector finds no face
    # leaves it empty, so wait for a reply with a face rather than sampling one moment.
    WebDriverWait(driver, 10).until(lambda d: d.execute_script(GREEN_PIXELS_JS, "overlay") > 200)
    save_artefact(driver, tmp_path, "serve_webcam.png")
    assert driver.find_element(By.ID, "webcam-button").text == "Stop webcam"
    driver.find_element(By.ID, "webcam-button").click()
    assert driver.find_element(By.ID, "webcam-button").text == "Use webcam"


def test_photo_upload_shows_annotated_image_and_bars(server_url, driver, tmp_path, astronaut_png):
    driver.get(server_url)
    driver.find_element(By.ID, "photo-input").send_keys(str(astronaut_png))
    faces = WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#photo-faces li"))
    save_artefact(driver, tmp_path, "serve_photo.png")
    assert len(faces) == 1
    assert faces[0].get_attribute("data-emotion") in CLASSES
    assert len(faces[0].find_elements(By.CSS_SELECTOR, ".bar")) == len(CLASSES)
    assert driver.find_element(By.ID, "photo-status").text == "astronaut.png: 1 face"
    drawn = driver.execute_script(GREEN_PIXELS_JS, "photo-canvas")
    assert drawn > 300 + green_pixels(cv2.imread(str(astronaut_png)))  # pixels of the drawn box, not the photo's


def test_not_an_image_shows_the_servers_error(server_url, driver, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a photo\n")
    driver.get(server_url)
    driver.find_element(By.ID, "photo-input").send_keys(str(text))
    status = driver.find_element(By.ID, "photo-status")
    WebDriverWait(driver, 10).until(lambda d: "415" in status.text)
    assert "notes.txt" in status.text and "error" in status.get_attribute("class")
