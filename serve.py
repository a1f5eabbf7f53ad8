"""A local web app for facial expression recognition: a page for photos and the browser's webcam, and a REST API.

    python serve.py                                   # http://127.0.0.1:8000 with the bundled model
    python serve.py --model runs/A/model.keras --port 8080
    python serve.py --host 0.0.0.0 --cors https://example.org   # reachable from other machines (warns)

Open the printed address: drop or choose a photo to get its faces with probability bars, or press "Use webcam"
(the browser's camera; frames go to this server only). The API, documented at /docs:

    curl -F file=@photo.jpg http://127.0.0.1:8000/api/predict   # predict.py --json's list, one record per face
    curl http://127.0.0.1:8000/api/health                       # model, classes, load
    ws://127.0.0.1:8000/api/stream                              # binary frames in, one JSON reply per frame

Limits: uploads over --max-upload-mb get 413, images over --max-pixels 413, non-images 415; more than
--max-in-flight photo requests at once get 503 at once. Ctrl-C (or SIGTERM) stops the server cleanly (exit 0);
exit 1 when the model cannot be loaded or the port is taken, 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import gc
import ipaddress
import signal
import socket
import sys

from config_fields import positive_float, positive_int
from errors import EXIT_ERROR, EXIT_OK, UserError
from inference.backends import add_backend_argument
from inference.classifiers import add_tta_argument
from inference.faces import FacePipeline, add_face_arguments, pipeline_from_args

LOOPBACK_NAMES = ("localhost",)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from inference.server import ServerSettings

    defaults = ServerSettings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0: all)"
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0: any free port)")
    add_face_arguments(parser, FacePipeline.for_photos())  # uploads; webcam frames use the video pipeline
    add_backend_argument(parser)
    add_tta_argument(parser)
    parser.add_argument(
        "--cors",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="let pages from this origin (e.g. https://example.org) call the API; repeatable; default: none",
    )
    limits = (  # flag, type, default, help: every one must be > 0
        ("--max-upload-mb", positive_float, defaults.max_upload_bytes / 2**20,
         "largest upload in MiB; larger gets 413 (default %(default)g)"),
        ("--max-pixels", positive_int, defaults.max_pixels,
         "largest image in pixels (width x height); larger gets 413 (default %(default)d)"),
        ("--max-in-flight", positive_int, defaults.max_in_flight,
         "photo requests admitted at once (running or waiting); the next gets 503 (default %(default)d)"),
        ("--threads", positive_int, defaults.inference_threads, "model threads (default %(default)d)"),
        ("--max-streams", positive_int, defaults.max_streams,
         "webcam streams at once; more are refused (default %(default)d)"),
    )
    for flag, kind, default, text in limits:
        parser.add_argument(flag, type=kind, default=default, help=text)
    parser.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=False, help="log every request (default off)"
    )
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} must lie in 0..65535")
    for origin in args.cors:
        if origin != "*" and "://" not in origin:
            parser.error(f"--cors {origin!r}: give an origin such as https://example.org (scheme://host[:port])")
    return args


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind now, so a taken port or a bad address is a one-line error before the model loads."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as err:
        raise UserError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not is_loopback(args.host):
        print(
            f"warning: --host {args.host} makes the server reachable from other machines; it has no login, so anyone "
            "who can reach this port can send it images",
            file=sys.stderr,
        )
    try:
        sock = bind_socket(args.host, args.port)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR

    import uvicorn

    from inference.predictor import FacePredictor
    from inference.server import ServerSettings, create_app

    settings = ServerSettings(
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=args.max_pixels,
        max_in_flight=args.max_in_flight,
        inference_threads=args.threads,
        max_streams=args.max_streams,
        cors_origins=tuple(args.cors),
    )
    try:
        predictor = FacePredictor(args.model, pipeline=pipeline_from_args(args), backend=args.backend, tta=args.tta)
        stream_predictor = FacePredictor(classifier=predictor.classifier, pipeline=FacePipeline.for_video())
    except (UserError, ValueError) as err:  # model, backend or detector files: one line
        sock.close()
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    app = create_app(predictor, settings, stream_predictor)
    config = uvicorn.Config(
        app,
        log_level="info",
        access_log=args.access_log,
        ws_max_size=settings.max_upload_bytes,
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving on http://{shown}:{port}  (API docs: http://{shown}:{port}/docs; Ctrl-C stops)", flush=True)
    # uvicorn handles SIGINT/SIGTERM itself (stops accepting, closes open connections, returns), then re-sends the
    # signal to the handlers it found: these record it, so a Ctrl-C ends in a clean exit 0 instead of a traceback.
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda sig, _frame: received.append(sig)) for sig in STOP_SIGNALS}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.started:
        return EXIT_ERROR
    if received:
        print(f"stopped by {signal.Signals(received[0]).name}", flush=True)
    return EXIT_OK


if __name__ == "__main__":
    status = main()
    # Python's last garbage collection walks all of TensorFlow's objects: seconds on a busy machine between 'q' (or
    # Ctrl-C) and the end of the process. Nothing left needs collecting, so exempt them.
    gc.freeze()
    raise SystemExit(status)
