"""The web app (inference.server) through FastAPI's TestClient, and serve.py's command line (no port is served).

The model is a tiny untrained CNN built on the fly: these tests check detection, the JSON contract, the limits and
the refusals, not accuracy. The real-browser tests are in test_browser.py.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import save_tiny_model
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

import predict
import serve
from inference.faces import FacePipeline
from inference.predictor import FacePredictor
from inference.server import ServerSettings, UploadError, create_app, decode_image

CLASSES = ["Angry", "Happy", "Neutral"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny.keras", CLASSES)


@pytest.fixture(scope="module")
def predictor(model_path) -> FacePredictor:
    return FacePredictor(model_path, pipeline=FacePipeline.for_photos())  # serve.py's upload pipeline, as predict.py


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor)) as client:
        yield client


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("images") / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def encode(image: np.ndarray, ext: str = ".png") -> bytes:
    ok, data = cv2.imencode(ext, image)
    assert ok
    return data.tobytes()


def post(client, data: bytes, name: str = "photo.png"):
    return client.post("/api/predict", files={"file": (name, data, "application/octet-stream")})


# ------------------------------------------------------------------------------------------------- photos


def test_astronaut_gives_predict_json(client, astronaut_png, capsys, model_path):
    response = post(client, astronaut_png.read_bytes(), "astronaut.png")
    assert response.status_code == 200
    faces = response.json()
    assert len(faces) == 1
    x, y, w, h = faces[0]["box"]
    assert 150 <= x + w / 2 <= 260 and 60 <= y + h / 2 <= 160  # Eileen Collins' face, upper middle
    assert faces[0]["image"] == "astronaut.png"
    # The same records as predict.py --json with the same model and detection size, but for the image's name.
    assert predict.main(["--image", str(astronaut_png), "--model", str(model_path), "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)
    assert [{**f, "image": None} for f in faces] == [{**f, "image": None} for f in expected]


def test_blank_image_gives_empty_list(client):
    response = post(client, encode(np.full((240, 320, 3), 127, np.uint8)))
    assert response.status_code == 200 and response.json() == []


def test_jpeg_grey_and_alpha_images_decode(client):
    rng = np.random.default_rng(0)
    for image, ext in [
        (rng.integers(0, 255, (64, 80), dtype=np.uint8), ".jpg"),
        (rng.integers(0, 255, (64, 80, 4), dtype=np.uint8), ".png"),
        (rng.integers(0, 65535, (64, 80), dtype=np.uint16), ".png"),
    ]:
        response = post(client, encode(image, ext), "x" + ext)
        assert response.status_code == 200, (ext, response.text)


@pytest.mark.parametrize(
    "data",
    [b"hello, this is text\n", b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 64],
    ids=["text", "empty", "truncated-png"],
)
def test_not_an_image_is_415_with_json(client, data):
    response = post(client, data, "notes.txt")
    assert response.status_code == 415
    assert "image" in response.json()["detail"]


def test_missing_file_field_is_422(client):
    assert client.post("/api/predict", data={"other": "x"}).status_code == 422


def test_too_big_upload_is_413_before_decoding(client):
    response = post(client, b"\0" * (11 * 2**20))
    assert response.status_code == 413 and "cap" in response.json()["detail"]


def test_chunked_upload_over_cap_is_413(predictor):
    settings = ServerSettings(max_upload_bytes=1000)
    with TestClient(create_app(predictor, settings)) as small:
        head = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        body = iter([head, *[b"x" * 50_000] * 3, b"\r\n--xyz--\r\n"])  # a generator: no Content-Length
        headers = {"content-type": "multipart/form-data; boundary=xyz"}
        response = small.post("/api/predict", content=body, headers=headers)
    assert response.status_code == 413


def test_pixel_cap_reads_the_header_only():
    data = encode(np.zeros((3000, 2000), np.uint8))  # 6 Mpx of zeros: a few kB of PNG
    with pytest.raises(UploadError) as err:
        decode_image(data, max_pixels=5_000_000)
    assert err.value.status == 413 and "2000x3000" in str(err.value)
    assert decode_image(data, max_pixels=6_000_000).shape == (3000, 2000, 3)


def test_exif_orientation_is_applied(tmp_path):
    from PIL import Image

    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": a phone held upright
    Image.new("RGB", (60, 40), "red").save(path, exif=exif)
    assert decode_image(path.read_bytes(), 10_000).shape == (60, 40, 3)  # shown upright, as the browser shows it


# ------------------------------------------------------------------------------------------- busy server


class BlockingPredictor:
    """Wraps a predictor: each predict call waits until ``release`` is set, so requests pile up on purpose."""

    def __init__(self, inner: FacePredictor):
        self.inner, self.release, self.entered = inner, threading.Event(), threading.Event()
        self.class_names, self.classifier = inner.class_names, inner.classifier
        self.assume_face, self.detector_name = inner.assume_face, inner.detector_name
        self.backend_name, self.model_file = inner.backend_name, inner.model_file

    def predict(self, image):
        self.entered.set()
        assert self.release.wait(10)
        return self.inner.predict(image)


def test_busy_server_answers_503_at_once(predictor):
    blocking = BlockingPredictor(predictor)
    data = encode(np.full((60, 80, 3), 127, np.uint8))
    with TestClient(create_app(blocking, ServerSettings(max_in_flight=1))) as busy:
        results = {}
        first = threading.Thread(target=lambda: results.setdefault("first", post(busy, data)))
        first.start()
        assert blocking.entered.wait(10)
        assert busy.get("/api/health").json()["in_flight"] == 1
        start = time.perf_counter()
        refused = post(busy, data)
        refused_after = time.perf_counter() - start
        blocking.release.set()
        first.join(10)
        assert post(busy, data).status_code == 200  # the slot is free again
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "busy" in refused.json()["detail"]
    assert refused_after < 5  # answered while the first request still held the model (it waits up to 10 s)
    assert results["first"].status_code == 200


# ---------------------------------------------------------------------------------------------- the page


def test_page_health_and_docs(client):
    page = client.get("/")
    assert page.status_code == 200 and "Use webcam" in page.text and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    health = client.get("/api/health").json()
    assert health["status"] == "ok" and health["classes"] == CLASSES and health["model"] == "tiny"
    assert (health["runtime"], health["model_file"]) == ("keras", "tiny.keras")  # no ONNX twin beside it
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/swagger/swagger-ui-bundle.js" in docs.text  # local files, no CDN
    assert client.get("/swagger/swagger-ui-bundle.js").status_code == 200
    assert "/api/predict" in client.get("/openapi.json").json()["paths"]


def test_no_file_system_access_from_a_client(client):
    for path in ("/static/../server.py", "/static/%2e%2e/server.py", "/static/../../serve.py"):
        response = client.get(path)
        assert response.status_code == 404 and "import" not in response.text


def test_no_cors_unless_asked(client, predictor):
    origin = {"origin": "https://elsewhere.example"}
    assert "access-control-allow-origin" not in client.get("/api/health", headers=origin).headers
    with TestClient(create_app(predictor, ServerSettings(cors_origins=("https://elsewhere.example",)))) as open_:
        headers = open_.get("/api/health", headers=origin).headers
    assert headers["access-control-allow-origin"] == "https://elsewhere.example"


# ------------------------------------------------------------------------------------------------ webcam


def test_stream_tracks_a_face_across_frames(client, astronaut_png):
    frame = astronaut_png.read_bytes()
    with client.websocket_connect("/api/stream") as ws:
        ws.send_bytes(frame)
        first = ws.receive_json()
        ws.send_bytes(encode(cv2.imread(str(astronaut_png))[:, 4:], ".jpg"))  # moved 4 px: the same face
        second = ws.receive_json()
        ws.send_bytes(b"not an image")
        error = ws.receive_json()
    assert (first["width"], first["height"]) == (512, 512) and len(first["faces"]) == 1
    assert first["faces"][0]["track_id"] == second["faces"][0]["track_id"] == 0
    assert first["faces"][0]["emotion"] in CLASSES
    assert second["frame"] == 1 and "image" in error["error"]


def test_stream_refuses_foreign_origins_and_too_many_streams(client, predictor):
    foreign = {"origin": "https://evil.example"}
    with pytest.raises(WebSocketDisconnect) as refused, client.websocket_connect("/api/stream", headers=foreign) as ws:
        ws.receive_json()
    assert refused.value.code == 1008
    with TestClient(create_app(predictor, ServerSettings(max_streams=1))) as one, one.websocket_connect(
        "/api/stream"
    ) as ws:
        with pytest.raises(WebSocketDisconnect) as busy, one.websocket_connect("/api/stream") as second:
            second.receive_json()
        ws.send_bytes(encode(np.full((60, 80, 3), 127, np.uint8)))
        assert ws.receive_json()["faces"] == []  # the first stream still works
    assert busy.value.code == 1013


# -------------------------------------------------------------------------------------------- serve.py CLI


def test_cli_rejects_bad_values(capsys):
    for argv in (["--port", "70000"], ["--max-upload-mb", "0"], ["--cors", "example.org"], ["--threads", "0"]):
        with pytest.raises(SystemExit) as exit_:
            serve.parse_args(argv)
        assert exit_.value.code == 2
        assert argv[0] in capsys.readouterr().err


def test_cli_warns_on_public_host_and_fails_cleanly_without_model(tmp_path, capsys):
    missing = tmp_path / "none.keras"
    assert serve.main(["--host", "0.0.0.0", "--port", "0", "--model", str(missing)]) == 1
    err = capsys.readouterr().err
    assert "warning: --host 0.0.0.0" in err and str(missing) in err and "Traceback" not in err


def test_cli_port_taken_is_one_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve.main(["--port", str(port)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot listen on 127.0.0.1:{port}") and "\n" not in err
    assert "warning" not in err


def test_loopback_detection():
    assert serve.is_loopback("127.0.0.1") and serve.is_loopback("::1") and serve.is_loopback("localhost")
    assert not serve.is_loopback("0.0.0.0") and not serve.is_loopback("192.168.1.2")
