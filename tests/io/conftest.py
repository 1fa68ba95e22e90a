"""Fixtures of the io tests: a local HTTP server for the cloud and STAC reads."""

from __future__ import annotations

import http.server
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Iterator, Optional

import pytest

#: The server stops by itself after this long, whatever a test does.
SERVER_LIFETIME_S = 300


@dataclass
class Request:
    method: str
    path: str
    range: Optional[str]
    sent: int


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Files of one folder, whole or by a single ``Range: bytes=a-b``; every request logged."""

    timeout = 30

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, body: bool) -> None:
        path = Path(self.directory) / self.path.lstrip("/")
        header = self.headers.get("Range")
        log = self.server.requests  # type: ignore[attr-defined]
        if not path.is_file():
            log.append(Request(self.command, self.path, header, 0))
            self.send_error(404)
            return
        data = path.read_bytes()
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", header or "")
        start, end = (int(match[1]), min(int(match[2] or len(data) - 1), len(data) - 1)) \
            if match else (0, len(data) - 1)
        chunk = data[start:end + 1]
        self.send_response(206 if match else 200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(chunk)))
        if match:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        if body:
            self.wfile.write(chunk)
        log.append(Request(self.command, self.path, header, len(chunk) if body else 0))

    def log_message(self, *args: object) -> None:  # the request log above is what counts
        pass


@contextmanager
def serve_folder(folder: Path) -> Iterator[tuple[str, list[Request]]]:
    """Serve ``folder`` at ``http://127.0.0.1:PORT``; yields that URL and the request log."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: _RangeHandler(*a, directory=str(folder)))
    server.daemon_threads = True
    server.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    deadline = threading.Timer(SERVER_LIFETIME_S, server.shutdown)
    deadline.daemon = True
    deadline.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.requests
    finally:
        deadline.cancel()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def serve() -> Callable[[Path], ContextManager[tuple[str, list[Request]]]]:
    """``with serve(folder) as (url, requests)``: ``folder`` over HTTP on 127.0.0.1.

    Every request (method, path, ``Range`` header, bytes sent) is logged in
    ``requests``, so a test sees exactly which bytes GDAL fetched.
    """
    return serve_folder
