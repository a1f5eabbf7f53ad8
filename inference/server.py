"""The local web app of ``serve.py``: one page for photos and the browser's webcam, and a small REST API.

    GET  /             the page (``inference/static/``): drop a photo, or "Use webcam"
    POST /api/predict  multipart field ``file`` (an image) -> ``predict.py --json``'s list, one record per face
    GET  /api/health   model, runtime and the file it runs, classes, detector and load: ``{"status": "ok", ...}``
    WS   /api/stream   binary JPEG/PNG/WebP frames in, one JSON message per processed frame out
    GET  /docs         OpenAPI docs (Swagger UI served from the swagger-ui-bundle package: no CDN, works offline)

Every request goes through the same :class:`inference.predictor.FacePredictor` as ``predict.py`` and
``predict_from_video.py``, loaded once by the caller. The model runs in a small thread pool so the event loop stays
free to answer (and refuse) requests while a photo is being processed.

Safe by default:

* uploads over ``max_upload_bytes`` get 413 before their body is read (from ``Content-Length``) or as soon as the
  streamed body passes the cap; images over ``max_pixels`` get 413 from their header, before they are decoded;
* content is checked by decoding it: anything that is not an image gets 415 with ``{"detail": "..."}``;
* no request names a file: uploads are decoded in memory and the page's files come from this package only;
* no CORS headers unless origins are given; WebSocket clients from another origin are refused (browsers do not
  apply CORS to WebSockets, so the origin is checked here);
* at most ``max_in_flight`` photo requests are admitted at once (running or waiting for the model); the next one
  gets 503 with ``Retry-After`` at once, before its body is read. Webcam streams are capped at ``max_streams``, and
  each keeps at most one frame: the latest frame wins, older unprocessed ones are dropped, nothing queues.

Webcam frames are smoothed per face by :class:`inference.video.FaceTracker`, the tracker of
``predict_from_video.py``; each face in a stream message carries its ``track_id``.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import cv2
import numpy as np
from fastapi import FastAPI, File, HTTPException, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from errors import UserError
from inference.predictor import FacePredictor
from inference.video import FaceTracker
from parameters import VideoPredictor

STATIC_DIR = Path(__file__).resolve().parent / "static"
MULTIPART_OVERHEAD = 64 * 1024  # boundary lines and part headers around the uploaded file
WS_CLOSE_POLICY = 1008  # RFC 6455: policy violation (here: a foreign origin)
WS_CLOSE_TRY_AGAIN = 1013  # RFC 6455: try again later (here: too many webcam streams)


@dataclass(frozen=True)
class ServerSettings:
    """Limits and defaults of the web app (``serve.py`` overrides them from its flags)."""

    max_upload_bytes: int = 10 * 1024 * 1024  # a larger upload gets 413
    max_pixels: int = 40_000_000  # width x height; a larger image gets 413 (a 10 MB PNG can decode to gigabytes)
    max_in_flight: int = 8  # photo requests admitted at once (running or waiting); the next one gets 503
    inference_threads: int = 1  # threads calling the model; more rarely help on a small CPU
    max_streams: int = 4  # webcam WebSocket streams at once; more are closed with code 1013
    smooth: float = VideoPredictor().smoothing  # webcam: weight of the previous probabilities, as in the video CLI
    hold_ms: float = 300.0  # webcam: keep a face the detector missed for this long (no flicker)
    cors_origins: tuple[str, ...] = ()  # origins allowed to call the API from another site's page; none by default

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        for name in ("max_upload_bytes", "max_pixels", "max_in_flight", "inference_threads", "max_streams"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)} must be >= 1")
        if not 0 <= self.smooth < 1:
            raise ValueError(f"smooth {self.smooth} must lie in [0, 1)")
        if self.hold_ms < 0:
            raise ValueError(f"hold_ms {self.hold_ms} must be >= 0")


class UploadError(UserError):
    """An upload the server refuses; ``status`` is the HTTP status code to answer with."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Encoded image bytes -> (h, w, 3) uint8 BGR, with EXIF orientation applied (as browsers show photos).

    The size is read from the header first (Pillow, no pixel decoded), so an oversized image never reaches
    memory. Raises UploadError: 415 for anything that is not a decodable image, 413 for more than ``max_pixels``.
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UploadError("empty upload: send an image file", 415)
    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
    except Image.DecompressionBombError:
        raise UploadError(f"image has more than {max_pixels} pixels", 413) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise UploadError("not an image (no image header found: send PNG, JPEG, WebP, BMP or TIFF)", 415) from None
    if width * height > max_pixels:
        raise UploadError(f"image is {width}x{height} = {width * height} pixels, over the cap of {max_pixels}", 413)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UploadError("not an image OpenCV can decode (corrupt or unsupported format)", 415)
    return image


class Gate:
    """A non-blocking counter of admitted requests: ``try_enter`` fails at once when ``limit`` are inside.

    Used from the event loop only (one thread), so a plain integer is enough.
    """

    def __init__(self, limit: int):
        self.limit, self.inside = limit, 0

    def try_enter(self) -> bool:
        if self.inside >= self.limit:
            return False
        self.inside += 1
        return True

    def leave(self) -> None:
        self.inside -= 1


class AdmissionMiddleware:
    """ASGI middleware: request bodies over ``max_body`` get 413 (from ``Content-Length`` before the body is read,
    else as soon as the streamed body passes the cap); on the ``gated`` paths, requests beyond the gate's limit get
    503 at once, before their body is read."""

    def __init__(self, app, *, gate: Gate, gated: tuple[str, ...], max_body: int):
        self.app, self.gate, self.gated, self.max_body = app, gate, gated, max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _json_response(send, 413, f"request of {int(length)} bytes is over the cap of {self.max_body}")
            return
        gated = scope["path"] in self.gated
        if gated and not self.gate.try_enter():
            detail = f"server busy ({self.gate.limit} requests in progress): retry in a moment"
            await _json_response(send, 503, detail, headers=[(b"retry-after", b"1")])
            return
        received = 0

        async def receive_capped():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:  # a chunked body with no Content-Length
                    raise HTTPException(413, f"request body over the cap of {self.max_body} bytes")
            return message

        try:
            await self.app(scope, receive_capped, send)
        finally:
            if gated:
                self.gate.leave()


async def _json_response(send, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *(headers or [])]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class LatestFrame:
    """A one-slot mailbox: ``put`` replaces an unread frame (counted in ``dropped``), ``get`` waits for one."""

    def __init__(self):
        self._data: bytes | None = None
        self._ready = asyncio.Event()
        self.closed = False
        self.dropped = 0

    def put(self, data: bytes) -> None:
        if self._data is not None:
            self.dropped += 1
        self._data = data
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._ready.set()

    async def get(self) -> bytes | None:
        """The newest unread frame, or None once closed."""
        await self._ready.wait()
        self._ready.clear()
        data, self._data = self._data, None
        return None if self.closed else data


def _origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """Same-origin pages, listed origins and non-browser clients (no Origin header) may open a stream."""
    if origin is None or origin in allowed or "*" in allowed:
        return True
    return host is not None and origin.split("://", 1)[-1] == host


def create_app(
    predictor: FacePredictor, settings: ServerSettings | None = None, stream_predictor: FacePredictor | None = None
):
    """The FastAPI app around a loaded ``predictor`` (photo uploads) and ``stream_predictor`` (webcam frames; default
    the same). Nothing is loaded or started here beyond a thread pool."""
    settings = settings or ServerSettings()
    settings.validate()
    executor = ThreadPoolExecutor(max_workers=settings.inference_threads, thread_name_prefix="fer-model")
    gate = Gate(settings.max_in_flight)
    streams = Gate(settings.max_streams)
    model_name = str(getattr(predictor.classifier, "metadata", {}).get("model_name", "model"))

    @asynccontextmanager
    async def lifespan(_app):
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="Facial expression recognition",
        summary="Find faces in a photo or a webcam stream and classify their expressions (FER2013 classes).",
        version="1",
        docs_url=None,  # served below from local files instead of a CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    app.add_middleware(
        AdmissionMiddleware, gate=gate, gated=("/api/predict",), max_body=settings.max_upload_bytes + MULTIPART_OVERHEAD
    )
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"])

    async def in_pool(function, *args):
        return await asyncio.get_running_loop().run_in_executor(executor, function, *args)

    def predicting_with(face_predictor: FacePredictor) -> Callable[[bytes], tuple[np.ndarray, list]]:
        def predict(data: bytes) -> tuple[np.ndarray, list]:
            image = decode_image(data, settings.max_pixels)
            return image, face_predictor.predict(image)

        return predict

    stream_predictor = stream_predictor or predictor
    predict_bytes, predict_frame = predicting_with(predictor), predicting_with(stream_predictor)

    @app.exception_handler(UploadError)
    async def upload_error(_request, err: UploadError):
        return JSONResponse({"detail": str(err)}, status_code=err.status)

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} - API",
            swagger_js_url="/swagger/swagger-ui-bundle.js",
            swagger_css_url="/swagger/swagger-ui.css",
            swagger_favicon_url="/swagger/favicon-32x32.png",
        )

    try:
        import swagger_ui_bundle

        app.mount("/swagger", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger")
    except ImportError:  # the docs page then shows no UI, /openapi.json still works
        pass

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        """Liveness and load: the model, its classes, and how many photo requests are in progress."""
        return {
            "status": "ok",
            "model": model_name,
            "runtime": predictor.backend_name,
            "model_file": predictor.model_file,
            "classes": list(predictor.class_names),
            "detector": "none (whole image is one face)" if predictor.assume_face else predictor.detector_name,
            "in_flight": gate.inside,
            "max_in_flight": gate.limit,
            "streams": streams.inside,
            "max_streams": streams.limit,
            "max_upload_bytes": settings.max_upload_bytes,
            "max_pixels": settings.max_pixels,
        }

    @app.post(
        "/api/predict",
        responses={
            413: {"description": "upload or image too large"},
            415: {"description": "not an image"},
            503: {"description": "busy: retry after the Retry-After seconds"},
        },
    )
    async def predict(file: Annotated[UploadFile, File(description="PNG, JPEG, WebP, BMP or TIFF")]) -> list[dict]:
        """Every face in the image, left to right, as ``predict.py --json`` prints it: ``image`` (the upload's
        name), ``box`` [x, y, w, h] in image pixels, ``emotion``, ``confidence`` and ``probabilities``. An image
        without a face gives ``[]``."""
        data = await file.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise HTTPException(413, f"upload over the cap of {settings.max_upload_bytes} bytes")
        _, faces = await in_pool(predict_bytes, data)
        name = Path(file.filename or "upload").name[:200]  # a label only: never used as a path
        return [{"image": name, **face.to_dict()} for face in faces]

    @app.websocket("/api/stream")
    async def stream(websocket: WebSocket) -> None:
        """Webcam frames: send encoded images (binary); each reply is ``{"frame", "width", "height", "faces":
        [{"track_id", "box", "emotion", "confidence", "probabilities"}], "dropped", "ms"}``, or ``{"error"}``."""
        if not _origin_allowed(websocket.headers.get("origin"), websocket.headers.get("host"), settings.cors_origins):
            await websocket.close(code=WS_CLOSE_POLICY, reason="origin not allowed")
            return
        if not streams.try_enter():
            await websocket.close(code=WS_CLOSE_TRY_AGAIN, reason=f"busy: {streams.limit} webcam streams open")
            return
        try:
            await websocket.accept()
            await _serve_stream(websocket, in_pool, predict_frame, stream_predictor, settings)
        except WebSocketDisconnect:
            pass
        finally:
            streams.leave()

    return app


async def _serve_stream(websocket, in_pool, predict_bytes, predictor: FacePredictor, settings: ServerSettings) -> None:
    """Receive frames into a one-slot mailbox while processing the newest one; reply once per processed frame."""
    mailbox = LatestFrame()

    async def receive() -> None:
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes")
                if data is not None:
                    mailbox.put(data)
        finally:
            mailbox.close()

    receiver = asyncio.create_task(receive())
    tracker = FaceTracker(predictor.class_names, smooth=settings.smooth, hold_ms=settings.hold_ms)
    start, frame = time.perf_counter(), 0
    try:
        while (data := await mailbox.get()) is not None:
            began = time.perf_counter()
            try:
                image, detected = await in_pool(predict_bytes, data)
            except UploadError as err:
                await websocket.send_json({"error": str(err)})
                continue
            faces = tracker.update(detected, (began - start) * 1000)
            await websocket.send_json(
                {
                    "frame": frame,
                    "width": int(image.shape[1]),
                    "height": int(image.shape[0]),
                    "faces": [{"track_id": i, **f.to_dict()} for i, f in zip(tracker.ids, faces, strict=True)],
                    "dropped": mailbox.dropped,
                    "ms": round((time.perf_counter() - began) * 1000, 1),
                }
            )
            frame += 1
    finally:
        receiver.cancel()
